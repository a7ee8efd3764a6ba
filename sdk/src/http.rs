//! The client side of HTTP/1.1 over any byte stream (feature `std`): writes an
//! [`http::Request`], reads an [`http::Response`] with `httparse`, `Content-Length`, chunked
//! and close-delimited bodies, under named size limits; plus the IMF-fixdate `Date` parser the
//! KMS client uses to correct its clock.
//!
//! Bodies are [`SecretBytes`] and every buffer that held one is zeroized: KMS responses carry
//! `Plaintext` in base64 and requests to `Encrypt` carry the plaintext.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::secret::{SecretBytes, reserve_wiping};
use crate::time::{DateTime, UnixMillis};
use core::fmt;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Largest response head (status line and headers) accepted: 16 KiB, Node.js's default
/// `http.maxHeaderSize` (nodejs.org/api/cli.html `--max-http-header-size`). KMS and IMDS
/// answers carry well under 1 KiB of headers.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most response headers accepted (KMS sends about 6; the `httparse` header array size).
pub const MAX_HEADERS: usize = 64;

/// Longest chunk-size line (`<hex>[;extensions]`) or trailer line accepted in a chunked body.
/// RFC 9112 §7.1 puts no bound on extensions; 1 KiB is far above any real one.
pub const MAX_CHUNK_LINE: usize = 1024;

/// How much is read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;

/// What went wrong at the HTTP layer. [`crate::net::TransportError`] wraps it with the
/// endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The request cannot be written (no `Host`, a method without a path, ...).
    InvalidRequest(&'static str),
    /// A read or write failed.
    Io {
        /// What was being done.
        during: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A read or write timed out (`SO_RCVTIMEO` / `SO_SNDTIMEO`).
    Timeout {
        /// What was being done.
        during: &'static str,
    },
    /// The peer closed the connection before the message was complete.
    Closed {
        /// What was being read.
        during: &'static str,
        /// True if not a single byte of the response arrived (a kept-alive connection the
        /// server had already closed: safe to resend on a new one).
        nothing_received: bool,
    },
    /// The status line and headers exceed [`MAX_HEAD_BYTES`].
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The response does not parse as HTTP/1.1.
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// The body exceeds the caller's limit.
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
}

impl HttpError {
    /// True when resending on a new connection may work (I/O failures, timeouts, early close).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Timeout { .. } | Self::Closed { .. }
        )
    }

    fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed {
            detail: detail.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(what) => write!(f, "cannot send the request: {what}"),
            Self::Io { during, source } => write!(f, "{during} failed: {source}"),
            Self::Timeout { during } => write!(f, "{during} timed out"),
            Self::Closed {
                during,
                nothing_received,
            } => write!(
                f,
                "the peer closed the connection while {during}{}",
                if *nothing_received {
                    " (nothing received)"
                } else {
                    ""
                }
            ),
            Self::HeadTooLarge { limit } => write!(
                f,
                "the response status line and headers exceed {limit} bytes; the peer is not \
                 KMS (or a proxy injects headers)"
            ),
            Self::Malformed { detail } => {
                write!(
                    f,
                    "malformed HTTP/1.1 response: {detail}; is the peer an HTTP server?"
                )
            }
            Self::BodyTooLarge { limit } => write!(
                f,
                "the response body exceeds {limit} bytes; the peer is not the expected service"
            ),
        }
    }
}

impl core::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl HttpError {
    /// Wraps this error with the endpoint, mapping I/O failures and timeouts to the
    /// transport's own variants.
    #[must_use]
    pub fn at(
        self,
        endpoint: &crate::net::Endpoint,
        io_timeout: core::time::Duration,
    ) -> crate::net::TransportError {
        use crate::net::TransportError;
        match self {
            Self::Io { during, source } => TransportError::Io {
                endpoint: endpoint.clone(),
                during,
                source,
            },
            Self::Timeout { during } => TransportError::Timeout {
                endpoint: endpoint.clone(),
                during,
                timeout: io_timeout,
            },
            error => TransportError::Http {
                endpoint: endpoint.clone(),
                error,
            },
        }
    }
}

fn io_error(during: &'static str, source: io::Error) -> HttpError {
    match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout { during },
        io::ErrorKind::UnexpectedEof => HttpError::Closed {
            during,
            nothing_received: false,
        },
        _ => HttpError::Io { during, source },
    }
}

/// Writes `request` as one HTTP/1.1 message: request line (`path?query` of the URI, `/` if
/// none), headers in order, `Host` from the URI's authority if the headers lack one, and
/// `Content-Length` when the body is non-empty or the method is `POST`/`PUT` and the headers
/// lack one.
///
/// # Errors
/// [`HttpError::InvalidRequest`] without any `Host`; [`HttpError::Io`] /
/// [`HttpError::Timeout`] when writing fails.
pub fn write_request<W: Write + ?Sized>(
    stream: &mut W,
    request: &Request<&[u8]>,
) -> Result<(), HttpError> {
    let body = *request.body();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let path = if path.is_empty() { "/" } else { path };
    let mut message = Zeroizing::new(Vec::with_capacity(512 + body.len()));
    message.extend_from_slice(request.method().as_str().as_bytes());
    message.push(b' ');
    message.extend_from_slice(path.as_bytes());
    message.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    if !headers.contains_key(http::header::HOST) {
        let authority = request.uri().authority().ok_or(HttpError::InvalidRequest(
            "no Host header and no authority in the URI",
        ))?;
        push_header(&mut message, "host", authority.as_str().as_bytes());
    }
    for (name, value) in headers {
        push_header(&mut message, name.as_str(), value.as_bytes());
    }
    let needs_length = !body.is_empty() || matches!(*request.method(), Method::POST | Method::PUT);
    if needs_length && !headers.contains_key(http::header::CONTENT_LENGTH) {
        push_header(
            &mut message,
            "content-length",
            body.len().to_string().as_bytes(),
        );
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(body);
    stream
        .write_all(&message)
        .and_then(|()| stream.flush())
        .map_err(|e| io_error("sending the request", e))
}

fn push_header(message: &mut Vec<u8>, name: &str, value: &[u8]) {
    message.extend_from_slice(name.as_bytes());
    message.extend_from_slice(b": ");
    message.extend_from_slice(value);
    message.extend_from_slice(b"\r\n");
}

/// A response and whether its connection may carry another request.
#[derive(Debug)]
pub struct Received {
    /// The response; the body is secret-safe.
    pub response: Response<SecretBytes>,
    /// False when the server said `Connection: close`, spoke HTTP/1.0, delimited the body by
    /// closing, or sent bytes past the body.
    pub reusable: bool,
}

/// A read buffer over the stream: bytes `[pos..]` are unconsumed. Zeroized on drop.
struct Buffer<'s, R: Read + ?Sized> {
    stream: &'s mut R,
    data: Zeroizing<Vec<u8>>,
    pos: usize,
    received_any: bool,
}

impl<R: Read + ?Sized> Buffer<'_, R> {
    fn unread(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Reads more bytes; `Ok(false)` at end of file.
    fn fill(&mut self, during: &'static str) -> Result<bool, HttpError> {
        // Drop consumed bytes first so the buffer does not grow without bound.
        if self.pos > 0 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.data.len();
        // Grown by moving to a larger buffer and wiping the old one: `Vec`'s own growth
        // would free a copy of the bytes read so far (a body holding a secret) unwiped.
        reserve_wiping(&mut self.data, READ_SIZE);
        self.data.resize(old + READ_SIZE, 0);
        let read = loop {
            match self
                .stream
                .read(self.data.get_mut(old..).unwrap_or_default())
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.data.truncate(old);
                    return Err(io_error(during, e));
                }
            }
        };
        self.data.truncate(old + read);
        if read > 0 {
            self.received_any = true;
        }
        Ok(read > 0)
    }

    fn closed(&self, during: &'static str) -> HttpError {
        HttpError::Closed {
            during,
            nothing_received: !self.received_any,
        }
    }

    /// Consumes exactly `n` bytes into `out`.
    fn take(&mut self, n: usize, out: &mut Vec<u8>, during: &'static str) -> Result<(), HttpError> {
        let mut left = n;
        while left > 0 {
            if self.unread().is_empty() && !self.fill(during)? {
                return Err(self.closed(during));
            }
            let step = self.unread().len().min(left);
            reserve_wiping(out, step);
            out.extend_from_slice(self.unread().get(..step).unwrap_or_default());
            self.pos += step;
            left -= step;
        }
        Ok(())
    }

    /// Consumes one CRLF-terminated line (without the CRLF), at most `limit` bytes.
    fn line(&mut self, limit: usize, during: &'static str) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(at) = self.unread().windows(2).position(|w| w == b"\r\n") {
                let line = self.unread().get(..at).unwrap_or_default().to_vec();
                self.pos += at + 2;
                return Ok(line);
            }
            if self.unread().len() > limit {
                return Err(HttpError::malformed(format!(
                    "a chunk-size or trailer line longer than {limit} bytes"
                )));
            }
            if !self.fill(during)? {
                return Err(self.closed(during));
            }
        }
    }
}

/// Reads one response to a request made with `method`, accepting a body of at most
/// `max_body` bytes. Interim `1xx` responses are skipped.
///
/// # Errors
/// [`HttpError::Closed`], [`HttpError::Io`], [`HttpError::Timeout`],
/// [`HttpError::HeadTooLarge`], [`HttpError::Malformed`] or [`HttpError::BodyTooLarge`].
pub fn read_response<R: Read + ?Sized>(
    stream: &mut R,
    method: &Method,
    max_body: usize,
) -> Result<Received, HttpError> {
    let mut buffer = Buffer {
        stream,
        data: Zeroizing::new(Vec::with_capacity(READ_SIZE)),
        pos: 0,
        received_any: false,
    };
    loop {
        let (head, head_len) = parse_head(&mut buffer)?;
        buffer.pos += head_len;
        if (100..200).contains(&head.status.as_u16()) {
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(HttpError::malformed(
                    "101 Switching Protocols was not asked for",
                ));
            }
            continue;
        }
        return finish(buffer, head, method, max_body);
    }
}

/// A parsed status line and headers.
struct Head {
    status: StatusCode,
    http11: bool,
    headers: http::HeaderMap,
}

fn parse_head<R: Read + ?Sized>(buffer: &mut Buffer<'_, R>) -> Result<(Head, usize), HttpError> {
    const DURING: &str = "reading the response headers";
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(buffer.unread()) {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
                return Err(HttpError::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                });
            }
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed
                    .code
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| HttpError::malformed("no valid status code"))?;
                let mut headers = http::HeaderMap::with_capacity(parsed.headers.len());
                for header in parsed.headers.iter() {
                    let name = HeaderName::from_bytes(header.name.as_bytes())
                        .map_err(|_| HttpError::malformed("an invalid header name"))?;
                    let value = HeaderValue::from_bytes(header.value)
                        .map_err(|_| HttpError::malformed("an invalid header value"))?;
                    headers.append(name, value);
                }
                let head = Head {
                    status,
                    http11: parsed.version == Some(1),
                    headers,
                };
                return Ok((head, len));
            }
            Ok(httparse::Status::Partial) => {
                if buffer.unread().len() > MAX_HEAD_BYTES {
                    return Err(HttpError::HeadTooLarge {
                        limit: MAX_HEAD_BYTES,
                    });
                }
                if !buffer.fill(DURING)? {
                    return Err(buffer.closed(DURING));
                }
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::malformed(format!(
                    "more than {MAX_HEADERS} headers"
                )));
            }
            Err(error) => return Err(HttpError::malformed(format!("{error}"))),
        }
    }
}

/// How the body is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(head: &Head, method: &Method, max_body: usize) -> Result<Framing, HttpError> {
    let status = head.status.as_u16();
    if *method == Method::HEAD || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let mut encodings = head
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .peekable();
    if encodings.peek().is_some() {
        let last = encodings.last().unwrap_or_default();
        if last.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        return Err(HttpError::malformed(format!(
            "unsupported Transfer-Encoding {last:?} (only chunked)"
        )));
    }
    let mut length: Option<usize> = None;
    for value in head.headers.get_all(http::header::CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("?").split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::malformed(format!(
                    "Content-Length {part:?} is not a number"
                )));
            }
            // A length that does not fit usize is certainly over the limit.
            let n = part.parse::<usize>().unwrap_or(usize::MAX);
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::malformed("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n > max_body => Err(HttpError::BodyTooLarge { limit: max_body }),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::UntilClose),
    }
}

fn finish<R: Read + ?Sized>(
    mut buffer: Buffer<'_, R>,
    head: Head,
    method: &Method,
    max_body: usize,
) -> Result<Received, HttpError> {
    const DURING: &str = "reading the response body";
    let framing = framing(&head, method, max_body)?;
    let mut body = SecretBytes::new(Vec::new());
    let mut reusable = head.http11
        && !head
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("close"));
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            body.expose_mut().reserve_exact(n);
            buffer.take(n, body.expose_mut(), DURING)?;
        }
        Framing::Chunked => read_chunked(&mut buffer, body.expose_mut(), max_body)?,
        Framing::UntilClose => {
            reusable = false;
            loop {
                let unread = buffer.unread();
                if body.len() + unread.len() > max_body {
                    return Err(HttpError::BodyTooLarge { limit: max_body });
                }
                reserve_wiping(body.expose_mut(), unread.len());
                body.expose_mut().extend_from_slice(unread);
                buffer.pos = buffer.data.len();
                if !buffer.fill(DURING)? {
                    break;
                }
            }
        }
    }
    if !buffer.unread().is_empty() {
        // Bytes past the end of this response: never read them as the next one.
        reusable = false;
    }
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    Ok(Received { response, reusable })
}

fn read_chunked<R: Read + ?Sized>(
    buffer: &mut Buffer<'_, R>,
    body: &mut Vec<u8>,
    max_body: usize,
) -> Result<(), HttpError> {
    const DURING: &str = "reading a chunked response body";
    loop {
        let mut line = buffer.line(MAX_CHUNK_LINE, DURING)?;
        line.extend_from_slice(b"\r\n");
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => return Err(HttpError::malformed("an invalid chunk-size line")),
        };
        if size == 0 {
            // Trailer fields until the empty line; they are ignored.
            loop {
                if buffer.line(MAX_CHUNK_LINE, DURING)?.is_empty() {
                    return Ok(());
                }
            }
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max_body.saturating_sub(body.len()) {
            return Err(HttpError::BodyTooLarge { limit: max_body });
        }
        buffer.take(size, body, DURING)?;
        if !buffer.line(MAX_CHUNK_LINE, DURING)?.is_empty() {
            return Err(HttpError::malformed("chunk data longer than its size"));
        }
    }
}

/// Sends `request` and reads the response on `stream` (one exchange).
///
/// # Errors
/// As [`write_request`] and [`read_response`].
pub fn exchange<S: Read + Write + ?Sized>(
    stream: &mut S,
    request: &Request<&[u8]>,
    max_body: usize,
) -> Result<Received, HttpError> {
    write_request(stream, request)?;
    read_response(stream, request.method(), max_body)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP `Date` in IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110
/// §5.6.7), the form KMS and every current server sends. `None` for anything else.
#[must_use]
pub fn parse_http_date(text: &str) -> Option<UnixMillis> {
    let rest = text.trim().split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day = parts.next()?;
    let month = parts.next()?;
    let year = parts.next()?;
    let clock = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let number = |s: &str| -> Option<u32> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let month = MONTHS.iter().position(|m| *m == month)?;
    let mut hms = clock.split(':');
    let (hour, minute, second) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || hour.len() != 2 || minute.len() != 2 || second.len() != 2 {
        return None;
    }
    DateTime {
        year: number(year)?,
        month: u32::try_from(month).ok()? + 1,
        day: number(day)?,
        hour: number(hour)?,
        minute: number(minute)?,
        second: number(second)?,
        millis: 0,
    }
    .to_unix_millis()
    .ok()
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(raw: &[u8], max_body: usize) -> Result<Received, HttpError> {
        read_response(&mut Cursor::new(raw.to_vec()), &Method::POST, max_body)
    }

    /// A reader that returns its input one byte per `read` call (worst-case fragmentation).
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(b), Some(slot)) => {
                    *slot = *b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn requests_are_written_with_host_and_length() {
        let request = Request::post("http://kms.eu-west-1.amazonaws.com/")
            .header("X-Amz-Target", "TrentService.GenerateRandom")
            .body(&br#"{"NumberOfBytes":32}"#[..])
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &request).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nhost: kms.eu-west-1.amazonaws.com\r\nx-amz-target: \
             TrentService.GenerateRandom\r\ncontent-length: 20\r\n\r\n{\"NumberOfBytes\":32}"
        );
        let put = Request::put("/latest/api/token")
            .header("host", "169.254.169.254")
            .body(&b""[..])
            .unwrap();
        let mut out = Vec::new();
        write_request(&mut out, &put).unwrap();
        assert_eq!(
            out,
            b"PUT /latest/api/token HTTP/1.1\r\nhost: 169.254.169.254\r\ncontent-length: 0\r\n\r\n"
        );
        let no_host = Request::get("/x").body(&b""[..]).unwrap();
        assert!(matches!(
            write_request(&mut Vec::new(), &no_host),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn content_length_bodies_and_keep_alive() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n\
                    x-amzn-RequestId: abc\r\nContent-Length: 5\r\n\r\nhello";
        let got = read(raw, 100).unwrap();
        assert_eq!(got.response.status(), 200);
        assert_eq!(got.response.body().expose(), b"hello");
        assert_eq!(got.response.headers()["x-amzn-requestid"], "abc");
        assert!(got.reusable);
        // The same bytes one at a time.
        let got = read_response(&mut Trickle(raw.to_vec(), 0), &Method::POST, 100).unwrap();
        assert_eq!(got.response.body().expose(), b"hello");

        let closing = read(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
            10,
        )
        .unwrap();
        assert!(!closing.reusable);
        let old = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 10).unwrap();
        assert!(!old.reusable);
        let extra = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", 10).unwrap();
        assert_eq!(extra.response.body().expose(), b"a");
        assert!(!extra.reusable);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\
                    X-Trailer: 1\r\n\r\n";
        let got = read(raw, 100).unwrap();
        assert_eq!(got.response.body().expose(), b"Wikipedia in\r\n\r\nchunks.");
        assert!(got.reusable);
        let got = read_response(&mut Trickle(raw.to_vec(), 0), &Method::GET, 100).unwrap();
        assert_eq!(got.response.body().len(), 23);
        assert!(matches!(
            read(raw, 10),
            Err(HttpError::BodyTooLarge { limit: 10 })
        ));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(
                matches!(read(bad, 100), Err(HttpError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let long_line = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..],
            &[b'x'; 2 * MAX_CHUNK_LINE],
        ]
        .concat();
        assert!(matches!(
            read(&long_line, 100),
            Err(HttpError::Malformed { .. })
        ));
    }

    #[test]
    fn close_delimited_bodies_and_limits() {
        let got = read(b"HTTP/1.1 200 OK\r\n\r\nuntil close", 100).unwrap();
        assert_eq!(got.response.body().expose(), b"until close");
        assert!(!got.reusable);
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\n\r\nuntil close", 5),
            Err(HttpError::BodyTooLarge { limit: 5 })
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 99),
            Err(HttpError::BodyTooLarge { limit: 99 })
        ));
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES + 1)
        );
        assert!(matches!(
            read(huge.as_bytes(), 10),
            Err(HttpError::HeadTooLarge { .. })
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(matches!(
            read(many.as_bytes(), 10),
            Err(HttpError::Malformed { .. })
        ));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                matches!(read(bad, 10), Err(HttpError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn early_close_says_whether_anything_arrived() {
        match read(b"", 10) {
            Err(HttpError::Closed {
                nothing_received: true,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 10) {
            Err(
                error @ HttpError::Closed {
                    nothing_received: false,
                    ..
                },
            ) => assert!(error.is_transient()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_head_has_no_body() {
        let got = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            10,
        )
        .unwrap();
        assert_eq!(got.response.status(), 204);
        let head = read_response(
            &mut Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec()),
            &Method::HEAD,
            0,
        )
        .unwrap();
        assert!(head.response.body().is_empty());
    }

    #[test]
    fn http_dates() {
        // RFC 9110 §5.6.7's example.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UnixMillis(784_111_777_000))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UnixMillis(0))
        );
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
