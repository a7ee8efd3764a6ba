//! Structured log events out of a console-less enclave: the records an enclave emits and their
//! wire form, one JSON object per line (the log protocol v1, `docs/log-protocol.md`).
//!
//! On Nitro the enclave's console is readable only in debug mode, and debug mode zeroes the
//! PCRs, so a production enclave can tell its operator nothing through it. Instead it sends
//! [`Record`]s to the parent over vsock ([`channel::Emitter`], feature `std`), and the parent
//! writes them to its journal and counts them in its metrics.
//!
//! # No secret by construction
//! A record is an event name and field names chosen by the programmer (`&'static str`), a
//! message, and field values that are text, numbers or booleans ([`Value`]). There is no
//! conversion from bytes or from [`crate::secret::SecretBytes`] (which has no `Display` and
//! whose `Debug` prints `[redacted]`): putting a secret in a record takes an explicit
//! `expose()` and an encoding by hand.
//!
//! # Wire form
//! ```text
//! {"v":1,"seq":7,"time":"2026-11-29T01:06:26.123Z","level":"info","event":"api.request",
//!  "message":"#3 hmac: ok","fields":{"op":"hmac","outcome":"ok","latency_seconds":0.012},
//!  "dropped":0}
//! ```
//! on one line, ended by `\n`. `seq` counts every record the emitter accepted (a gap means
//! records were dropped or lost with a connection); `dropped` is how many records the sender's
//! queue dropped (oldest first) since the previous line was sent. [`decode`] is the parent's
//! reader: bounded, never panics, and refuses anything but this shape with a [`LineError`].
//!
//! This part is `no_std` + `alloc` and reads no clock: the time is the caller's.

#[cfg(all(feature = "std", target_os = "linux"))]
pub mod channel;
#[cfg(all(feature = "std", feature = "aws-lc", target_os = "linux"))]
mod kms;

use crate::time::UnixMillis;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde_json::{Number, Value as Json};

/// The protocol version written in every line's `v`.
pub const VERSION: u64 = 1;

/// The parent's vsock port for the log channel by convention: clear of the API (5000), the
/// KMS proxy (8000), the proxy's CONNECT port in the examples (8001), the credentials service
/// (8002) and the boot heartbeat (9000).
pub const DEFAULT_PORT: u32 = 8003;

/// Longest line, `\n` included: 64 KiB. A record's message and fields are cut well below it
/// ([`MAX_MESSAGE_LEN`], [`MAX_TEXT_LEN`], [`MAX_FIELDS`]); the reader refuses longer lines
/// without buffering them.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// Longest message kept (bytes of UTF-8): 8 KiB, room for KMS's longest `AccessDenied`
/// explanation; longer ones are cut and marked.
pub const MAX_MESSAGE_LEN: usize = 8 * 1024;

/// Longest text field value kept (bytes of UTF-8): 1 KiB; longer ones are cut and marked.
pub const MAX_TEXT_LEN: usize = 1024;

/// Most fields in one record (more are left out, and a `fields_omitted` field says how many).
pub const MAX_FIELDS: usize = 32;

/// Longest event or field name: 64 bytes of `[a-z0-9_.]`.
pub const MAX_NAME_LEN: usize = 64;

/// How important a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Routine detail (heartbeats, each KMS step).
    Debug,
    /// Normal operation (start-up, requests, successful calls).
    Info,
    /// Something an operator may need to act on (a retry, a refused request, emulation).
    Warn,
    /// A failure (a call that failed, a stop).
    Error,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Self; 4] = [Self::Debug, Self::Info, Self::Warn, Self::Error];

    /// The wire name: `debug`, `info`, `warn`, `error`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The level of a wire name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field's value: text, a number or a boolean. There is deliberately no conversion from
/// bytes (see the module docs).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// UTF-8 text.
    Text(String),
    /// A count or size.
    Unsigned(u64),
    /// A signed number (an offset).
    Signed(i64),
    /// A finite measurement (a latency in seconds). Non-finite numbers become text.
    Float(f64),
    /// A flag.
    Bool(bool),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Self::Unsigned(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Self::Unsigned(n.into())
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Self::Unsigned(n.into())
    }
}

impl From<u8> for Value {
    fn from(n: u8) -> Self {
        Self::Unsigned(n.into())
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Self::Unsigned(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Self::Signed(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Self::Signed(n.into())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        if x.is_finite() {
            Self::Float(x)
        } else {
            Self::Text(x.to_string())
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Unsigned(n) => n.fmt(f),
            Self::Signed(n) => n.fmt(f),
            Self::Float(x) => x.fmt(f),
            Self::Bool(b) => b.fmt(f),
        }
    }
}

impl Value {
    /// The text, if this is text.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            #[expect(clippy::cast_precision_loss, reason = "a metric, not an identity")]
            Self::Unsigned(n) => Some(*n as f64),
            #[expect(clippy::cast_precision_loss, reason = "a metric, not an identity")]
            Self::Signed(n) => Some(*n as f64),
            Self::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// The number as `u64`, if this is a non-negative integer.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Unsigned(n) => Some(*n),
            Self::Signed(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    fn to_json(&self) -> Json {
        match self {
            Self::Text(text) => Json::String(cut(text, MAX_TEXT_LEN)),
            Self::Unsigned(n) => Json::Number((*n).into()),
            Self::Signed(n) => Json::Number((*n).into()),
            Self::Float(x) => Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Self::Bool(b) => Json::Bool(*b),
        }
    }
}

/// One event of the enclave's life: what happened (`event`, a dotted name such as
/// `api.request`), how much it matters, a human message (what the console shows in debug mode)
/// and named values.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// When it happened (the enclave's clock).
    pub time: UnixMillis,
    /// How much it matters.
    pub level: Level,
    /// What happened: `[a-z0-9_.]`, at most [`MAX_NAME_LEN`] bytes.
    pub event: &'static str,
    /// The human line (without any prefix).
    pub message: String,
    /// Named values, in order.
    pub fields: Vec<(&'static str, Value)>,
}

impl Record {
    /// A record of `event` at `time` with `message` and no fields yet.
    #[must_use]
    pub fn new(time: UnixMillis, level: Level, event: &'static str, message: String) -> Self {
        Self {
            time,
            level,
            event,
            message,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    #[must_use]
    pub fn field(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// Adds a field when `value` is `Some`.
    #[must_use]
    pub fn field_opt<V: Into<Value>>(self, name: &'static str, value: Option<V>) -> Self {
        match value {
            Some(value) => self.field(name, value),
            None => self,
        }
    }

    /// The value of the first field named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| value)
    }

    /// The wire line (ended by `\n`, at most [`MAX_LINE_LEN`] bytes) for sequence number `seq`
    /// with `dropped` records dropped since the previous line. Over-long texts are cut (and
    /// marked), names are rewritten into `[a-z0-9_.]`, fields past [`MAX_FIELDS`]
    /// are left out; a record that still does not fit is replaced by a `log.oversized` record
    /// naming it.
    #[must_use]
    pub fn encode(&self, seq: u64, dropped: u64) -> String {
        let line = self.encode_unchecked(seq, dropped);
        if line.len() <= MAX_LINE_LEN {
            return line;
        }
        Self::new(
            self.time,
            Level::Error,
            "log.oversized",
            format!(
                "a `{}` record did not fit in a {MAX_LINE_LEN}-byte line ({} bytes) and was \
                 replaced by this one",
                name(self.event),
                line.len()
            ),
        )
        .field("event_name", name(self.event))
        .encode_unchecked(seq, dropped)
    }

    fn encode_unchecked(&self, seq: u64, dropped: u64) -> String {
        let mut names: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        for (field, value) in &self.fields {
            let field = name(field);
            if !names.contains(&field) {
                names.push(field.clone());
                fields.push((field, value.to_json()));
            }
        }
        let omitted = fields.len().saturating_sub(MAX_FIELDS);
        fields.truncate(MAX_FIELDS);
        if omitted > 0 {
            fields.push(("fields_omitted".into(), Json::Number(omitted.into())));
        }
        let mut line = write_line(
            &[],
            seq,
            &self.time.to_string(),
            self.level,
            &name(self.event),
            &cut(&self.message, MAX_MESSAGE_LEN),
            fields,
            dropped,
        );
        line.push('\n');
        line
    }
}

/// One line's JSON object, members in the protocol's order (`extra` first), without the `\n`.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per member of the wire object, in wire order"
)]
fn write_line(
    extra: &[(&str, Json)],
    seq: u64,
    time: &str,
    level: Level,
    event: &str,
    message: &str,
    fields: Vec<(String, Json)>,
    dropped: u64,
) -> String {
    let text = |s: &str| Json::String(s.into()).to_string();
    let mut out = String::from("{");
    for (key, value) in extra {
        out.push_str(&format!("{}:{value},", text(key)));
    }
    out.push_str(&format!(
        "\"v\":{VERSION},\"seq\":{seq},\"time\":{},\"level\":{},\"event\":{},\"message\":{},\"fields\":{{",
        text(time),
        text(level.as_str()),
        text(event),
        text(message)
    ));
    let fields: Vec<String> = fields
        .into_iter()
        .map(|(key, value)| format!("{}:{value}", text(&key)))
        .collect();
    out.push_str(&fields.join(","));
    out.push_str(&format!("}},\"dropped\":{dropped}}}"));
    out
}

/// `text` whole, or cut at a character boundary at most `limit` bytes in, marked with how
/// much was left out.
fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.into();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = text.get(..end).unwrap_or_default();
    format!("{kept}…[{} more bytes cut]", text.len() - end)
}

/// A valid wire name for `text`: ASCII capitals in lower case, other characters outside
/// `[a-z0-9_.]` as `_`, at most [`MAX_NAME_LEN`] bytes, never empty.
fn name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

const fn is_name_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '_' | '.')
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_NAME_LEN && text.chars().all(is_name_char)
}

/// One line as the parent read it: every member checked, nothing else kept.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// `seq`.
    pub seq: u64,
    /// `time`, as written (checked to be RFC 3339).
    pub time: String,
    /// `level`.
    pub level: Level,
    /// `event`.
    pub event: String,
    /// `message`.
    pub message: String,
    /// `fields`.
    pub fields: BTreeMap<String, Value>,
    /// `dropped`.
    pub dropped: u64,
}

impl Received {
    /// The text field `name`.
    #[must_use]
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_text)
    }

    /// The same line again, with `extra` members first (the parent adds the enclave's CID and
    /// the receive time). Only the checked members are written, so nothing the peer added
    /// reaches the journal.
    #[must_use]
    pub fn to_json_with(&self, extra: &[(&str, Json)]) -> String {
        write_line(
            extra,
            self.seq,
            &self.time,
            self.level,
            &self.event,
            &self.message,
            self.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
            self.dropped,
        )
    }
}

/// Why a line was refused. Never quotes the line (it is the peer's).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// Longer than [`MAX_LINE_LEN`].
    TooLong {
        /// Its length (or how much was read before giving up).
        len: usize,
    },
    /// Not one JSON object.
    NotJson {
        /// Where the parser stopped (1-based column).
        column: usize,
    },
    /// A required member is missing.
    Missing(&'static str),
    /// A member has the wrong type or form.
    Invalid {
        /// The member.
        member: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// Another protocol version.
    UnsupportedVersion(u64),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => write!(
                f,
                "a log line of {len} bytes or more; lines end within {MAX_LINE_LEN} bytes \
                 (log protocol v{VERSION})"
            ),
            Self::NotJson { column } => write!(
                f,
                "not one JSON object (the parser stopped at column {column}); each line is one \
                 record of log protocol v{VERSION}"
            ),
            Self::Missing(member) => write!(f, "the record has no `{member}`"),
            Self::Invalid { member, expected } => {
                write!(f, "the record's `{member}` is not {expected}")
            }
            Self::UnsupportedVersion(v) => write!(
                f,
                "log protocol version {v}; this parent reads version {VERSION} (update the \
                 parent together with the enclave image)"
            ),
        }
    }
}

impl core::error::Error for LineError {}

/// Reads one line (with or without its `\n`).
///
/// # Errors
/// [`LineError`] for anything but a record of protocol v1 within the limits.
pub fn decode(line: &[u8]) -> Result<Received, LineError> {
    if line.len() > MAX_LINE_LEN {
        return Err(LineError::TooLong { len: line.len() });
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut object = match serde_json::from_slice::<Json>(line) {
        Ok(Json::Object(object)) => object,
        Ok(_) => return Err(LineError::NotJson { column: 1 }),
        Err(e) => {
            return Err(LineError::NotJson {
                column: e.column().max(1),
            });
        }
    };
    let mut take = |member: &'static str| object.remove(member).ok_or(LineError::Missing(member));
    let invalid = |member, expected| LineError::Invalid { member, expected };
    let version = take("v")?
        .as_u64()
        .ok_or(invalid("v", "a version number"))?;
    if version != VERSION {
        return Err(LineError::UnsupportedVersion(version));
    }
    let seq = take("seq")?
        .as_u64()
        .ok_or(invalid("seq", "a sequence number"))?;
    let time = match take("time")? {
        Json::String(text) if UnixMillis::parse(&text).is_ok() => text,
        _ => return Err(invalid("time", "an RFC 3339 time")),
    };
    let level = take("level")?
        .as_str()
        .and_then(Level::parse)
        .ok_or(invalid("level", "debug, info, warn or error"))?;
    let event = match take("event")? {
        Json::String(text) if is_name(&text) => text,
        _ => return Err(invalid("event", "a name of [a-z0-9_.] (1 to 64 bytes)")),
    };
    let message = match take("message")? {
        Json::String(text) if text.len() <= MAX_MESSAGE_LEN + 64 => text,
        _ => return Err(invalid("message", "a string within the message limit")),
    };
    let fields = match take("fields")? {
        Json::Object(map) if map.len() <= MAX_FIELDS + 1 => map,
        _ => {
            return Err(invalid(
                "fields",
                "an object of at most 33 members (32 and fields_omitted)",
            ));
        }
    };
    let mut checked = BTreeMap::new();
    for (key, value) in fields {
        if !is_name(&key) {
            return Err(invalid("fields", "named with [a-z0-9_.] (1 to 64 bytes)"));
        }
        let value = match value {
            Json::String(text) if text.len() <= MAX_TEXT_LEN + 64 => Value::Text(text),
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Value::Unsigned(u),
                (None, Some(i), _) => Value::Signed(i),
                (None, None, Some(x)) if x.is_finite() => Value::Float(x),
                _ => return Err(invalid("fields", "finite numbers")),
            },
            _ => {
                return Err(invalid(
                    "fields",
                    "text (within the text limit), numbers or booleans",
                ));
            }
        };
        checked.insert(key, value);
    }
    let dropped = take("dropped")?
        .as_u64()
        .ok_or(invalid("dropped", "a count"))?;
    Ok(Received {
        seq,
        time,
        level,
        event,
        message,
        fields: checked,
        dropped,
    })
}

/// The fuzz entry: [`decode`] on arbitrary bytes, and the re-encoding of what it accepts,
/// which must decode to the same record.
///
/// # Panics
/// When a re-encoded record does not read back the same (a bug the fuzzer reports).
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(received) = decode(data) {
        let again = received.to_json_with(&[]);
        assert_eq!(decode(again.as_bytes()).ok(), Some(received));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use serde_json::Map;

    fn record() -> Record {
        Record::new(
            UnixMillis(1_795_914_386_123),
            Level::Info,
            "api.request",
            "#3 hmac: ok".into(),
        )
        .field("op", "hmac")
        .field("outcome", "ok")
        .field("latency_seconds", 0.012)
        .field("id", 3u64)
        .field("offset", -5i64)
        .field("debug", false)
    }

    #[test]
    fn a_record_round_trips_through_its_line() {
        let line = record().encode(7, 2);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert!(
            line.starts_with(r#"{"v":1,"seq":7,"time":"2026-11-29T01:06:26.123Z","level":"info","#),
            "{line}"
        );
        let received = decode(line.as_bytes()).unwrap();
        assert_eq!(received.seq, 7);
        assert_eq!(received.dropped, 2);
        assert_eq!(received.level, Level::Info);
        assert_eq!(received.event, "api.request");
        assert_eq!(received.message, "#3 hmac: ok");
        assert_eq!(received.text("op"), Some("hmac"));
        assert_eq!(received.fields["latency_seconds"], Value::Float(0.012));
        assert_eq!(received.fields["id"], Value::Unsigned(3));
        assert_eq!(received.fields["offset"], Value::Signed(-5));
        assert_eq!(received.fields["debug"], Value::Bool(false));
        // The parent's re-encoding reads back the same, with its own members first.
        let tagged = received.to_json_with(&[("cid", Json::Number(16.into()))]);
        assert!(tagged.starts_with(r#"{"cid":16,"v":1,"#), "{tagged}");
        assert_eq!(decode(tagged.as_bytes()).unwrap(), received);
    }

    #[test]
    fn limits_are_kept_on_the_way_out() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let mut record = Record::new(UnixMillis(0), Level::Warn, "Bad Name!", long.clone())
            .field("Also Bad", long.as_str());
        // Repeated names are written once.
        record = record.field("also_bad", "again");
        for n in 0..MAX_FIELDS + 4 {
            let field: &'static str = Box::leak(format!("n{n}").into_boxed_str());
            record = record.field(field, 1u64);
        }
        let line = record.encode(1, 0);
        assert!(line.len() <= MAX_LINE_LEN);
        let received = decode(line.as_bytes()).unwrap();
        assert_eq!(received.event, "bad_name_");
        assert!(received.message.len() <= MAX_MESSAGE_LEN + 64);
        assert!(
            received.message.ends_with("more bytes cut]"),
            "cut and marked"
        );
        assert!(received.text("also_bad").unwrap().len() <= MAX_TEXT_LEN + 64);
        assert!(received.text("also_bad").unwrap().starts_with('é'));
        // 1 + 36 distinct fields: 32 kept, 5 left out and counted.
        assert_eq!(received.fields.len(), MAX_FIELDS + 1);
        assert_eq!(received.fields["fields_omitted"], Value::Unsigned(5));
        // Non-finite numbers are text, never an invalid JSON number.
        let nan = Record::new(UnixMillis(0), Level::Info, "x", String::new())
            .field("latency_seconds", f64::NAN);
        let received = decode(nan.encode(1, 0).as_bytes()).unwrap();
        assert_eq!(received.text("latency_seconds"), Some("NaN"));
    }

    #[test]
    fn control_characters_stay_inside_one_line() {
        let record = Record::new(
            UnixMillis(0),
            Level::Error,
            "x",
            "line one\nline two\r\u{0}\u{1b}[31m".into(),
        )
        .field("peer", "a\nb");
        let line = record.encode(1, 0);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let received = decode(line.as_bytes()).unwrap();
        assert_eq!(received.message, record.message);
        assert_eq!(received.text("peer"), Some("a\nb"));
    }

    /// Every refusal, by what is wrong; none quotes the line.
    #[test]
    fn bad_lines_are_refused_by_name() {
        let good = || -> Map<String, Json> {
            match serde_json::from_str(record().encode(1, 0).trim_end()).unwrap() {
                Json::Object(object) => object,
                _ => unreachable!(),
            }
        };
        let with = |member: &str, value: Json| {
            let mut object = good();
            object.insert(member.into(), value);
            Json::Object(object).to_string()
        };
        let without = |member: &str| {
            let mut object = good();
            object.remove(member);
            Json::Object(object).to_string()
        };
        let cases: Vec<(String, LineError)> = vec![
            (
                "secret-ish garbage".into(),
                LineError::NotJson { column: 1 },
            ),
            ("[1,2]".into(), LineError::NotJson { column: 1 }),
            (without("seq"), LineError::Missing("seq")),
            (
                with("v", Json::Number(2.into())),
                LineError::UnsupportedVersion(2),
            ),
            (
                with("time", "yesterday".into()),
                LineError::Invalid {
                    member: "time",
                    expected: "an RFC 3339 time",
                },
            ),
            (
                with("level", "fatal".into()),
                LineError::Invalid {
                    member: "level",
                    expected: "debug, info, warn or error",
                },
            ),
            (
                with("event", "API Request".into()),
                LineError::Invalid {
                    member: "event",
                    expected: "a name of [a-z0-9_.] (1 to 64 bytes)",
                },
            ),
            (
                with("fields", serde_json::json!({"nested": {"a": 1}})),
                LineError::Invalid {
                    member: "fields",
                    expected: "text (within the text limit), numbers or booleans",
                },
            ),
            (
                with("dropped", Json::Number((-1).into())),
                LineError::Invalid {
                    member: "dropped",
                    expected: "a count",
                },
            ),
        ];
        for (line, expected) in cases {
            let error = decode(line.as_bytes()).unwrap_err();
            assert_eq!(error, expected, "{line}");
            assert!(!error.to_string().contains("secret-ish"), "{error}");
        }
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert_eq!(
            decode(&long).unwrap_err(),
            LineError::TooLong {
                len: MAX_LINE_LEN + 1
            }
        );
    }

    #[test]
    fn unknown_members_are_read_past_and_not_kept() {
        let mut object: Map<String, Json> =
            serde_json::from_str(record().encode(1, 0).trim_end()).unwrap();
        object.insert("later".into(), "from a newer enclave".into());
        let received = decode(Json::Object(object).to_string().as_bytes()).unwrap();
        assert!(!received.to_json_with(&[]).contains("later"));
    }

    #[test]
    fn the_fuzz_entry_accepts_what_it_should() {
        fuzz_decode(record().encode(1, 0).as_bytes());
        fuzz_decode(b"\xff\xfe{");
        fuzz_decode(b"{\"v\":1}");
    }
}
