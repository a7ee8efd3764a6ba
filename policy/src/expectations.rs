//! `release/pcr-expectations.json`: every published version's measurements, kept forever.
//!
//! Format 2, one entry per version under `releases`, in version order:
//!
//! ```json
//! {
//!   "comment": "...",
//!   "format": 2,
//!   "releases": {
//!     "0.2.0": {
//!       "PCR0": "<96 hex>", "PCR1": "<96 hex>", "PCR2": "<96 hex>",
//!       "PCR8": "<96 hex, only for a signed image>",
//!       "date": "2026-12-01T10:00:00+00:00",
//!       "commit": "<40 hex>",
//!       "environments": ["development", "staging"],
//!       "superseded": "<why, for a version nobody should deploy>"
//!     }
//!   }
//! }
//! ```
//!
//! **Invariant:** a version's measurements, date and commit never change once recorded
//! ([`Expectations::record`] refuses; a different build is a new version). Only two things may
//! change on a recorded version: `environments` (written from `deploy/environments.toml` by
//! [`Expectations::set_environments`]), and `superseded`, which can be set but never lifted.
//! Parsing is strict: an unknown member, a malformed PCR, date or commit is an error naming the
//! version and the member.

use crate::hex::is_pcr_hex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The format this module reads and writes.
pub const FORMAT: u32 = 2;

/// Where the file lives in a CCC repository.
pub const PATH: &str = "release/pcr-expectations.json";

const COMMENT: &str = "Measurements of every published CCC release, by version, written by \
    `cargo xtask release`: PCR0/1/2 (PCR8 for a signed image), the build date and commit, and the \
    environments of deploy/environments.toml that allow the version (kept in step by `cargo \
    xtask policy render`). A version's measurements never change: a different build is a new \
    version. A superseded version says why and must not be deployed to staging or production.";

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Release {
    /// PCR0 (the whole image), lowercase hex.
    pub pcr0: String,
    /// PCR1 (kernel and bootstrap), lowercase hex.
    pub pcr1: String,
    /// PCR2 (the application), lowercase hex.
    pub pcr2: String,
    /// PCR8 (the signing certificate) of a signed image, lowercase hex.
    pub pcr8: Option<String>,
    /// RFC 3339 date of the build (the release's `SOURCE_DATE_EPOCH`).
    pub date: String,
    /// The git commit built.
    pub commit: String,
    /// The environments that allow this version.
    pub environments: BTreeSet<String>,
    /// Why nobody should deploy this version any more, if so.
    pub superseded: Option<String>,
}

impl Release {
    /// A release with no environment and not superseded. PCRs are lowercased.
    ///
    /// # Errors
    /// [`ExpectationsError::Invalid`] for a PCR that is not 96 hex digits, a date that is not
    /// RFC 3339 or a commit that is not 40 (or 64) hex digits.
    pub fn new(
        pcrs: [&str; 3],
        pcr8: Option<&str>,
        date: &str,
        commit: &str,
    ) -> Result<Self, ExpectationsError> {
        let release = Self {
            pcr0: pcrs[0].to_ascii_lowercase(),
            pcr1: pcrs[1].to_ascii_lowercase(),
            pcr2: pcrs[2].to_ascii_lowercase(),
            pcr8: pcr8.map(str::to_ascii_lowercase),
            date: date.to_owned(),
            commit: commit.to_owned(),
            environments: BTreeSet::new(),
            superseded: None,
        };
        release.check("(new)")?;
        Ok(release)
    }

    /// `(index, value)` of every PCR recorded: 0, 1, 2 and 8 when signed.
    #[must_use]
    pub fn pcrs(&self) -> Vec<(u8, &str)> {
        let mut out = vec![
            (0, self.pcr0.as_str()),
            (1, self.pcr1.as_str()),
            (2, self.pcr2.as_str()),
        ];
        if let Some(pcr8) = &self.pcr8 {
            out.push((8, pcr8.as_str()));
        }
        out
    }

    /// Whether two releases measure the same (PCRs compared case-insensitively; date, commit
    /// and environments ignored).
    #[must_use]
    pub fn same_measurements(&self, other: &Self) -> bool {
        self.pcrs().len() == other.pcrs().len()
            && self
                .pcrs()
                .iter()
                .zip(other.pcrs())
                .all(|((i, a), (j, b))| *i == j && a.eq_ignore_ascii_case(b))
    }

    fn check(&self, version: &str) -> Result<(), ExpectationsError> {
        let invalid = |member: &str, problem: String| ExpectationsError::Invalid {
            version: version.to_owned(),
            member: member.to_owned(),
            problem,
        };
        for (index, value) in self.pcrs() {
            if !is_pcr_hex(value) {
                return Err(invalid(
                    &format!("PCR{index}"),
                    format!(
                        "`{value}` is not 96 hexadecimal digits (a SHA-384 measurement as \
                         `nitro-cli describe-eif` prints it)"
                    ),
                ));
            }
        }
        if !is_rfc3339(&self.date) {
            return Err(invalid(
                "date",
                format!(
                    "`{}` is not an RFC 3339 time such as 2026-12-01T10:00:00+00:00",
                    self.date
                ),
            ));
        }
        if !matches!(self.commit.len(), 40 | 64)
            || !self
                .commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                "commit",
                format!(
                    "`{}` is not a git commit id (40 or 64 lowercase hex digits)",
                    self.commit
                ),
            ));
        }
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SS` followed by an optional fraction and `Z` or `±HH:MM`.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    if !(digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && (at(10, b'T') || at(10, b't'))
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19))
    {
        return false;
    }
    let mut rest = text.get(19..).unwrap_or("");
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = fraction.get(end..).unwrap_or("");
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// Why the file cannot be read, or a change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpectationsError {
    /// Not JSON, or not this format's shape (the parser's message names the member).
    Syntax(String),
    /// Another format than [`FORMAT`].
    Format {
        /// The `format` found (1 when absent: the file predates environments).
        found: u32,
    },
    /// A member of a version is malformed.
    Invalid {
        /// The version.
        version: String,
        /// The member (`PCR0`, `date`, ...).
        member: String,
        /// What is wrong and what to write.
        problem: String,
    },
    /// A version string unusable in file names and policies.
    Version(String),
    /// Recording a version whose measurements differ from the recorded ones.
    Rewrite {
        /// The version.
        version: String,
        /// `PCRn recorded ... built ...` lines.
        table: String,
    },
    /// A superseded version would be made current again.
    Unsupersede {
        /// The version.
        version: String,
    },
    /// [`Expectations::set_environments`] named a version that is not recorded.
    UnknownVersion {
        /// The version.
        version: String,
        /// The environment that named it.
        environment: String,
    },
}

impl fmt::Display for ExpectationsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(why) => write!(
                f,
                "{PATH} is not a format-{FORMAT} expectations file: {why}; restore it from git \
                 (only `cargo xtask release` and `cargo xtask policy render` write it)"
            ),
            Self::Format { found } => write!(
                f,
                "{PATH} has format {found}, this tool reads format {FORMAT}; restore the file \
                 from git at this commit"
            ),
            Self::Invalid {
                version,
                member,
                problem,
            } => write!(f, "{PATH}: release {version}: {member}: {problem}"),
            Self::Version(version) => write!(
                f,
                "version `{version}`: use 1 to 64 letters, digits and .+- (for example 0.2.0), \
                 not starting with a dot"
            ),
            Self::Rewrite { version, table } => write!(
                f,
                "release {version} is already published with other measurements:\n{table}\nA \
                 published version's measurements never change: bump the version (`--version`)"
            ),
            Self::Unsupersede { version } => write!(
                f,
                "release {version} is superseded and stays so: publish a new version instead"
            ),
            Self::UnknownVersion {
                version,
                environment,
            } => write!(
                f,
                "environment {environment} allows release {version}, which {PATH} does not \
                 record: publish it with `cargo xtask release --version {version}` or remove it \
                 from allowed_versions"
            ),
        }
    }
}

impl std::error::Error for ExpectationsError {}

/// What [`Expectations::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// The version was new.
    Added,
    /// The version was there with the same measurements: nothing changed.
    Unchanged,
}

/// Every published version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    releases: BTreeMap<String, Release>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseFile {
    #[serde(rename = "PCR0")]
    pcr0: String,
    #[serde(rename = "PCR1")]
    pcr1: String,
    #[serde(rename = "PCR2")]
    pcr2: String,
    #[serde(rename = "PCR8", default, skip_serializing_if = "Option::is_none")]
    pcr8: Option<String>,
    date: String,
    commit: String,
    #[serde(default)]
    environments: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    superseded: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InFile {
    #[serde(default)]
    #[allow(dead_code, reason = "read for strictness, rewritten on output")]
    comment: Option<String>,
    #[serde(default)]
    format: Option<u32>,
    releases: serde_json::Value,
}

/// Checks a version string is usable in file names, JSON keys and statement ids.
///
/// # Errors
/// [`ExpectationsError::Version`]: empty, longer than 64, starting with a dot, or holding
/// characters other than letters, digits and `.+-`.
pub fn check_version(version: &str) -> Result<(), ExpectationsError> {
    if !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
    {
        Ok(())
    } else {
        Err(ExpectationsError::Version(version.to_owned()))
    }
}

/// Sort key for versions: dot/dash/plus-separated parts, numbers before words and compared as
/// numbers (`0.2.0` < `0.10.0`).
#[must_use]
pub fn version_key(version: &str) -> Vec<(u8, u64, String)> {
    version
        .split(['.', '-', '+'])
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (0, n, String::new()),
            Err(_) => (1, 0, part.to_owned()),
        })
        .collect()
}

/// `PCRn  match|MISMATCH` lines with both values, for messages.
#[must_use]
pub fn pcr_table(recorded: &Release, built: &Release) -> String {
    let mut lines = Vec::new();
    let built_pcrs: BTreeMap<u8, &str> = built.pcrs().into_iter().collect();
    let recorded_pcrs: BTreeMap<u8, &str> = recorded.pcrs().into_iter().collect();
    let indices: BTreeSet<u8> = built_pcrs
        .keys()
        .chain(recorded_pcrs.keys())
        .copied()
        .collect();
    for index in indices {
        let a = recorded_pcrs.get(&index).copied().unwrap_or("(none)");
        let b = built_pcrs.get(&index).copied().unwrap_or("(none)");
        let verdict = if a.eq_ignore_ascii_case(b) {
            "match"
        } else {
            "MISMATCH"
        };
        lines.push(format!(
            "  PCR{index} {verdict}\n    published {a}\n    built     {b}"
        ));
    }
    lines.join("\n")
}

impl Expectations {
    /// Parses the file's text.
    ///
    /// # Errors
    /// [`ExpectationsError`] naming the version and member at fault.
    pub fn parse(text: &str) -> Result<Self, ExpectationsError> {
        let file: InFile =
            serde_json::from_str(text).map_err(|e| ExpectationsError::Syntax(e.to_string()))?;
        let format = file.format.unwrap_or(1);
        if format != FORMAT {
            return Err(ExpectationsError::Format { found: format });
        }
        let serde_json::Value::Object(entries) = file.releases else {
            return Err(ExpectationsError::Syntax(
                "`releases` is not an object of versions".into(),
            ));
        };
        let mut releases = BTreeMap::new();
        for (version, entry) in entries {
            check_version(&version)?;
            let entry: ReleaseFile = serde_json::from_value(entry)
                .map_err(|e| ExpectationsError::Syntax(format!("release {version}: {e}")))?;
            let release = Release {
                pcr0: entry.pcr0,
                pcr1: entry.pcr1,
                pcr2: entry.pcr2,
                pcr8: entry.pcr8,
                date: entry.date,
                commit: entry.commit,
                environments: entry.environments,
                superseded: entry.superseded,
            };
            release.check(&version)?;
            for (index, value) in release.pcrs() {
                if value.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(ExpectationsError::Invalid {
                        version,
                        member: format!("PCR{index}"),
                        problem: "has upper-case hex; the file keeps measurements lowercase".into(),
                    });
                }
            }
            releases.insert(version, release);
        }
        Ok(Self { releases })
    }

    /// The file's text: `comment`, `format`, then the versions in version order (numeric
    /// parts compared as numbers), each entry's members in a fixed order; pretty JSON with a
    /// trailing newline. Deterministic.
    #[must_use]
    pub fn to_json(&self) -> String {
        use std::fmt::Write as _;
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut text = format!(
            "{{\n  \"comment\": {},\n  \"format\": {FORMAT},\n  \"releases\": {{",
            quote(COMMENT)
        );
        let versions: Vec<(&str, &Release)> = self.iter().collect();
        for (n, (version, release)) in versions.iter().enumerate() {
            let entry = ReleaseFile {
                pcr0: release.pcr0.clone(),
                pcr1: release.pcr1.clone(),
                pcr2: release.pcr2.clone(),
                pcr8: release.pcr8.clone(),
                date: release.date.clone(),
                commit: release.commit.clone(),
                environments: release.environments.clone(),
                superseded: release.superseded.clone(),
            };
            // Serialising a struct of strings cannot fail; its members keep declaration order.
            let entry = serde_json::to_string_pretty(&entry).unwrap_or_default();
            // The entry sits two objects deep: indent its own lines by four spaces.
            let indented = entry.replace('\n', "\n    ");
            let comma = if n + 1 < versions.len() { "," } else { "" };
            let _ = write!(text, "\n    {}: {indented}{comma}", quote(version));
        }
        text.push_str(if versions.is_empty() {
            "}\n}\n"
        } else {
            "\n  }\n}\n"
        });
        text
    }

    /// The recorded release of `version`.
    #[must_use]
    pub fn get(&self, version: &str) -> Option<&Release> {
        self.releases.get(version)
    }

    /// Every version with its release, oldest first (by [`version_key`]).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Release)> {
        let mut all: Vec<(&str, &Release)> =
            self.releases.iter().map(|(v, r)| (v.as_str(), r)).collect();
        all.sort_by_key(|(v, _)| version_key(v));
        all.into_iter()
    }

    /// The newest version, if any.
    #[must_use]
    pub fn latest(&self) -> Option<&str> {
        self.iter().last().map(|(v, _)| v)
    }

    /// Records `version`. A version already recorded with the same measurements is left
    /// as it is (its date, commit and environments are kept).
    ///
    /// # Errors
    /// [`ExpectationsError::Rewrite`] when the version is recorded with other measurements;
    /// [`ExpectationsError::Version`] for an unusable version string; [`ExpectationsError::Invalid`]
    /// for a malformed release.
    pub fn record(
        &mut self,
        version: &str,
        release: Release,
    ) -> Result<Recorded, ExpectationsError> {
        check_version(version)?;
        release.check(version)?;
        match self.releases.get(version) {
            Some(old) if old.same_measurements(&release) => Ok(Recorded::Unchanged),
            Some(old) => Err(ExpectationsError::Rewrite {
                version: version.to_owned(),
                table: pcr_table(old, &release),
            }),
            None => {
                self.releases.insert(
                    version.to_owned(),
                    Release {
                        environments: BTreeSet::new(),
                        ..release
                    },
                );
                Ok(Recorded::Added)
            }
        }
    }

    /// Marks `version` superseded with a reason (it stays recorded, values untouched).
    ///
    /// # Errors
    /// [`ExpectationsError::UnknownVersion`] when it is not recorded.
    pub fn supersede(&mut self, version: &str, why: &str) -> Result<(), ExpectationsError> {
        let release =
            self.releases
                .get_mut(version)
                .ok_or_else(|| ExpectationsError::UnknownVersion {
                    version: version.to_owned(),
                    environment: "(supersede)".to_owned(),
                })?;
        release.superseded = Some(why.to_owned());
        Ok(())
    }

    /// Rewrites every version's `environments` from `allowed` (environment → versions it
    /// allows); versions no environment names get an empty list. Nothing else changes.
    ///
    /// # Errors
    /// [`ExpectationsError::UnknownVersion`] when an environment names an unrecorded version
    /// (nothing is changed then).
    pub fn set_environments(
        &mut self,
        allowed: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), ExpectationsError> {
        for (environment, versions) in allowed {
            for version in versions {
                if !self.releases.contains_key(version) {
                    return Err(ExpectationsError::UnknownVersion {
                        version: version.clone(),
                        environment: environment.clone(),
                    });
                }
            }
        }
        for (version, release) in &mut self.releases {
            release.environments = allowed
                .iter()
                .filter(|(_, versions)| versions.contains(version))
                .map(|(environment, _)| environment.clone())
                .collect();
        }
        Ok(())
    }

    /// How a document's PCRs (index → lowercase hex) compare with the published versions:
    /// the versions that match exactly (PCR0/1/2, and PCR8 when the version is signed), else
    /// the closest one (most PCRs equal; the newest on a tie) with the PCRs that differ.
    #[must_use]
    pub fn compare(&self, pcrs: &BTreeMap<u8, String>) -> Comparison {
        let mut exact = Vec::new();
        let mut best: Option<(usize, String, Vec<u8>)> = None;
        for (version, release) in self.iter() {
            let differing: Vec<u8> = release
                .pcrs()
                .iter()
                .filter(|(index, value)| {
                    !pcrs
                        .get(index)
                        .is_some_and(|have| have.eq_ignore_ascii_case(value))
                })
                .map(|(index, _)| *index)
                .collect();
            if differing.is_empty() {
                exact.push(version.to_owned());
                continue;
            }
            let equal = release.pcrs().len() - differing.len();
            if best.as_ref().is_none_or(|(n, _, _)| equal >= *n) {
                best = Some((equal, version.to_owned(), differing));
            }
        }
        if !exact.is_empty() {
            return Comparison::Matches(exact);
        }
        match best {
            Some((equal, version, differing)) if equal > 0 => {
                Comparison::Closest { version, differing }
            }
            _ => Comparison::NoneClose,
        }
    }
}

/// How a document compares with the published versions ([`Expectations::compare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Comparison {
    /// These versions measure exactly like the document.
    Matches(Vec<String>),
    /// No version matches; this one shares the most PCRs.
    Closest {
        /// The version.
        version: String,
        /// The PCRs that differ.
        differing: Vec<u8>,
    },
    /// No published version shares a single PCR with the document.
    NoneClose,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(byte: u8) -> String {
        format!("{byte:02x}").repeat(48)
    }

    fn release(seed: u8) -> Release {
        Release::new(
            [&hex_of(seed), &hex_of(seed + 1), &hex_of(seed + 2)],
            None,
            "2026-12-01T10:00:00+00:00",
            &"ab".repeat(20),
        )
        .unwrap()
    }

    #[test]
    fn versions_accumulate_in_version_order_and_round_trip() {
        let mut e = Expectations::default();
        assert_eq!(e.record("0.10.0", release(1)).unwrap(), Recorded::Added);
        assert_eq!(e.record("0.2.0", release(5)).unwrap(), Recorded::Added);
        let order: Vec<&str> = e.iter().map(|(v, _)| v).collect();
        assert_eq!(order, ["0.2.0", "0.10.0"]);
        assert_eq!(e.latest(), Some("0.10.0"));
        let text = e.to_json();
        assert!(text.find("\"0.2.0\"").unwrap() < text.find("\"0.10.0\"").unwrap());
        assert!(text.ends_with("}\n"));
        let back = Expectations::parse(&text).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_json(), text);
        // The text is what serde_json would print for the same members.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["format"], 2);
        assert_eq!(value["releases"]["0.2.0"]["PCR1"], hex_of(6));
        assert!(value["releases"]["0.2.0"].get("PCR8").is_none());
    }

    /// The invariant: once recorded, a version's measurements are never rewritten, whatever
    /// the caller asks; equal measurements (in any case) change nothing, not even the date.
    #[test]
    fn a_recorded_version_is_never_rewritten() {
        let mut e = Expectations::default();
        e.record("0.2.0", release(5)).unwrap();
        let before = e.to_json();
        let mut upper = release(5);
        upper.pcr0 = upper.pcr0.to_ascii_uppercase();
        upper.date = "2030-01-01T00:00:00Z".into();
        assert_eq!(e.record("0.2.0", upper).unwrap(), Recorded::Unchanged);
        assert_eq!(e.to_json(), before);
        for changed in [
            release(9),
            Release {
                pcr8: Some(hex_of(0x88)),
                ..release(5)
            },
        ] {
            let err = e.record("0.2.0", changed).unwrap_err();
            assert!(matches!(err, ExpectationsError::Rewrite { .. }), "{err}");
            assert!(err.to_string().contains("bump the version"), "{err}");
            assert_eq!(e.to_json(), before);
        }
        assert!(
            e.record("0.2.0", release(9))
                .unwrap_err()
                .to_string()
                .contains("PCR0 MISMATCH")
        );
    }

    #[test]
    fn environments_are_the_only_member_that_moves() {
        let mut e = Expectations::default();
        e.record("0.1.0", release(1)).unwrap();
        e.record("0.2.0", release(5)).unwrap();
        let allowed = BTreeMap::from([
            (
                "development".to_owned(),
                BTreeSet::from(["0.2.0".to_owned()]),
            ),
            (
                "production".to_owned(),
                BTreeSet::from(["0.1.0".to_owned(), "0.2.0".to_owned()]),
            ),
        ]);
        e.set_environments(&allowed).unwrap();
        assert_eq!(
            e.get("0.2.0").unwrap().environments,
            BTreeSet::from(["development".to_owned(), "production".to_owned()])
        );
        assert!(e.get("0.2.0").unwrap().same_measurements(&release(5)));
        let unknown =
            BTreeMap::from([("staging".to_owned(), BTreeSet::from(["9.9.9".to_owned()]))]);
        let before = e.clone();
        let err = e.set_environments(&unknown).unwrap_err();
        assert!(err.to_string().contains("allows release 9.9.9"), "{err}");
        assert_eq!(e, before);
    }

    #[test]
    fn strict_parsing_names_the_member() {
        let good = {
            let mut e = Expectations::default();
            e.record("0.2.0", release(0xa0)).unwrap();
            e.to_json()
        };
        for (from, to, expect) in [
            ("\"format\": 2", "\"format\": 3", "format 3"),
            ("\"format\": 2,", "", "format 1"),
            ("\"date\"", "\"when\"", "unknown field `when`"),
            (&hex_of(0xa1), "xyz", "PCR1"),
            (&hex_of(0xa1), &hex_of(0xa1).to_uppercase(), "upper-case"),
            ("2026-12-01T10:00:00+00:00", "yesterday", "date"),
            (&"ab".repeat(20), "main", "commit"),
            ("\"0.2.0\"", "\"../x\"", "version `../x`"),
        ] {
            let text = good.replacen(from, to, 1);
            let err = Expectations::parse(&text)
                .map(drop)
                .expect_err(&format!("{from} -> {to} parsed"))
                .to_string();
            assert!(err.contains(expect), "{from} -> {to}: {err}");
        }
    }

    #[test]
    fn documents_are_matched_to_versions() {
        let mut e = Expectations::default();
        e.record("0.1.0", release(1)).unwrap();
        e.record("0.2.0", release(5)).unwrap();
        let signed = Release {
            pcr8: Some(hex_of(0x88)),
            ..release(20)
        };
        e.record("0.3.0", signed).unwrap();
        let doc = |seed: u8, pcr8: Option<u8>| {
            let mut pcrs = BTreeMap::from([
                (0, hex_of(seed)),
                (1, hex_of(seed + 1)),
                (2, hex_of(seed + 2)),
            ]);
            if let Some(b) = pcr8 {
                pcrs.insert(8, hex_of(b));
            }
            pcrs
        };
        assert_eq!(
            e.compare(&doc(5, None)),
            Comparison::Matches(vec!["0.2.0".into()])
        );
        assert_eq!(
            e.compare(&doc(20, Some(0x88))),
            Comparison::Matches(vec!["0.3.0".into()])
        );
        // The same image unsigned is not the signed release.
        assert_eq!(
            e.compare(&doc(20, None)),
            Comparison::Closest {
                version: "0.3.0".into(),
                differing: vec![8]
            }
        );
        let mut rebuilt = doc(5, None);
        rebuilt.insert(2, hex_of(0x77));
        rebuilt.insert(0, hex_of(0x78));
        assert_eq!(
            e.compare(&rebuilt),
            Comparison::Closest {
                version: "0.2.0".into(),
                differing: vec![0, 2]
            }
        );
        assert_eq!(e.compare(&doc(0x60, None)), Comparison::NoneClose);
    }

    #[test]
    fn rfc3339() {
        for ok in [
            "2026-11-29T01:06:26+00:00",
            "2026-11-29T01:06:26Z",
            "2026-11-29T01:06:26.123-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2026-11-29",
            "2026-11-29T01:06:26",
            "2026-11-29T01:06:26.Z",
            "",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
