//! The host's build tools as inputs of a release: which ones the manifest records (`tools`),
//! which PCR each can change, and the comparison `verify-release` prints before it rebuilds.
//!
//! The comparison never stops a rebuild: a different tool version is a reason to expect a
//! mismatch, not proof of one, so the rebuild and the PCR comparison decide.

use std::collections::BTreeMap;

/// One host tool a release records, and what it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostTool {
    /// Its key in the manifest's `tools` map.
    pub key: &'static str,
    /// What it builds and which PCR that can change (PCR0 follows PCR1 and PCR2).
    pub reaches: &'static str,
}

/// Debian packages of the kernel build (`kernel::BUILD_PACKAGES` with the packages behind
/// `build-essential` that the kernel's Makefiles call), recorded by their package version.
pub(crate) const KERNEL_PACKAGES: &[&str] = &[
    "gcc",
    "make",
    "bison",
    "flex",
    "bc",
    "perl",
    "libelf-dev",
    "libssl-dev",
];

/// What each recorded host tool reaches, in the order `verify-release` prints them.
pub(crate) const HOST_TOOLS: &[HostTool] = &[
    HostTool {
        key: "rustc",
        reaches: "compiles ccc-init (PCR1) and the application (PCR2), and brings the musl \
                  target's libc.a and crt objects",
    },
    HostTool {
        key: "cargo",
        reaches: "drives both builds (PCR1, PCR2); the crates themselves are pinned by Cargo.lock",
    },
    HostTool {
        key: "cc",
        reaches: "compiles the C code of aws-lc-sys in the application (PCR2) and drives the link \
                  of ccc-init (PCR1) and the application (PCR2)",
    },
    HostTool {
        key: "ld",
        reaches: "links ccc-init (PCR1) and the application (PCR2), called by cc",
    },
    HostTool {
        key: "musl",
        reaches: "musl-dev's headers (through musl-gcc) compile the C code of aws-lc-sys in the \
                  application (PCR2)",
    },
    HostTool {
        key: "os",
        reaches: "the Debian point release, which fixes the versions of every package above",
    },
    HostTool {
        key: "gcc",
        reaches: "the kernel's compiler (PCR1), only when the kernel is built (a cache miss)",
    },
    HostTool {
        key: "make",
        reaches: "runs the kernel build (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "bison",
        reaches: "generates the kernel's Kconfig parser (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "flex",
        reaches: "generates the kernel's Kconfig lexer (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "bc",
        reaches: "generates kernel headers (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "perl",
        reaches: "runs kernel build scripts (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "libelf-dev",
        reaches: "objtool and other kernel host programs (PCR1), only when the kernel is built",
    },
    HostTool {
        key: "libssl-dev",
        reaches: "the kernel's signing/certificate host programs (PCR1), only when the kernel is \
                  built",
    },
];

/// How a recorded tool compares with this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Same version string.
    Same,
    /// Both known, different.
    Differs,
    /// The manifest predates this tool's record (or the release did not know it).
    NotRecorded,
    /// This host could not report it (not installed, or the program failed).
    UnknownHere,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub key: String,
    pub recorded: Option<String>,
    pub host: Option<String>,
    pub status: Status,
    pub reaches: &'static str,
}

impl Row {
    /// The sentence naming a difference (`None` when the versions are the same).
    pub(crate) fn difference(&self) -> Option<String> {
        let recorded = self.recorded.as_deref().unwrap_or("not recorded");
        let host = self.host.as_deref().unwrap_or("unknown");
        let key = &self.key;
        let reaches = self.reaches;
        match self.status {
            Status::Same => None,
            Status::Differs => Some(format!(
                "{key}: manifest `{recorded}`, this host `{host}`: it {reaches}; expect PCR \
                 differences there if the new version generates other code"
            )),
            Status::NotRecorded => Some(format!(
                "{key}: not recorded by this release (an older manifest), this host `{host}`: it \
                 {reaches}; a mismatch there cannot be traced to it from the manifest"
            )),
            Status::UnknownHere => Some(format!(
                "{key}: manifest `{recorded}`, this host cannot report it (not installed?): it \
                 {reaches}"
            )),
        }
    }
}

/// A value the tool readers write when they could not read one.
fn known(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && *v != "unknown").cloned()
}

/// Compares a manifest's `tools` with this host's, in `HOST_TOOLS` order, then any tool only
/// the manifest records (from a newer release tool) by name.
pub(crate) fn compare(
    recorded: &BTreeMap<String, String>,
    host: &BTreeMap<String, String>,
) -> Vec<Row> {
    let reaches_of = |key: &str| {
        HOST_TOOLS
            .iter()
            .find(|t| t.key == key)
            .map_or("is an input this tool does not describe", |t| t.reaches)
    };
    let known_keys = HOST_TOOLS.iter().map(|t| t.key);
    let extra = recorded
        .keys()
        .map(String::as_str)
        .filter(|k| !HOST_TOOLS.iter().any(|t| t.key == *k));
    known_keys
        .chain(extra)
        .map(|key| {
            let recorded_value = known(recorded.get(key));
            let host_value = known(host.get(key));
            let status = match (&recorded_value, &host_value) {
                (None, _) => Status::NotRecorded,
                (Some(_), None) => Status::UnknownHere,
                (Some(a), Some(b)) if a == b => Status::Same,
                (Some(_), Some(_)) => Status::Differs,
            };
            Row {
                key: key.to_owned(),
                recorded: recorded_value,
                host: host_value,
                status,
                reaches: reaches_of(key),
            }
        })
        .collect()
}

/// The table `verify-release` prints: one line per tool, then each difference named.
pub(crate) fn report(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let mut text = String::from("host tools vs the manifest:\n");
    for row in rows {
        let mark = match row.status {
            Status::Same => "same",
            Status::Differs => "DIFFERS",
            Status::NotRecorded => "not recorded",
            Status::UnknownHere => "UNKNOWN HERE",
        };
        text.push_str(&format!(
            "  {:width$}  {:12}  manifest: {}  this host: {}\n",
            row.key,
            mark,
            row.recorded.as_deref().unwrap_or("-"),
            row.host.as_deref().unwrap_or("-"),
        ));
    }
    let differences: Vec<String> = rows.iter().filter_map(Row::difference).collect();
    if differences.is_empty() {
        text.push_str("  every recorded host tool matches\n");
    } else {
        text.push_str("differences (the rebuild goes on; the PCRs decide):\n");
        for line in differences {
            text.push_str(&format!("  - {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn row<'a>(rows: &'a [Row], key: &str) -> &'a Row {
        rows.iter().find(|r| r.key == key).unwrap()
    }

    #[test]
    fn a_different_cc_is_named_with_both_versions_and_its_pcr() {
        let rows = compare(
            &map(&[
                ("cc", "cc (Debian 12.2.0-14) 12.2.0"),
                ("ld", "GNU ld 2.40"),
            ]),
            &map(&[
                ("cc", "cc (Debian 12.2.0-14+deb12u1) 12.2.0"),
                ("ld", "GNU ld 2.40"),
            ]),
        );
        let cc = row(&rows, "cc");
        assert_eq!(cc.status, Status::Differs);
        let sentence = cc.difference().unwrap();
        assert!(sentence.starts_with(
            "cc: manifest `cc (Debian 12.2.0-14) 12.2.0`, this host `cc (Debian \
             12.2.0-14+deb12u1) 12.2.0`"
        ));
        assert!(sentence.contains("aws-lc-sys") && sentence.contains("PCR2"));
        assert_eq!(row(&rows, "ld").status, Status::Same);
        assert_eq!(row(&rows, "ld").difference(), None);
        let text = report(&rows);
        assert!(text.contains("- cc: manifest"));
        assert!(!text.contains("- ld:"));
    }

    #[test]
    fn a_kernel_tool_names_pcr1_and_the_cache_miss() {
        let rows = compare(
            &map(&[("flex", "2.6.4-8.2")]),
            &map(&[("flex", "2.6.4-8.3")]),
        );
        let sentence = row(&rows, "flex").difference().unwrap();
        assert!(sentence.contains("PCR1") && sentence.contains("only when the kernel is built"));
    }

    #[test]
    fn a_tool_missing_here_is_named_not_taken_as_same() {
        let rows = compare(&map(&[("bc", "1.07.1-3")]), &map(&[("bc", "unknown")]));
        assert_eq!(row(&rows, "bc").status, Status::UnknownHere);
        assert!(
            row(&rows, "bc")
                .difference()
                .unwrap()
                .contains("cannot report it")
        );
    }

    #[test]
    fn a_tool_only_a_newer_manifest_records_is_still_compared() {
        let rows = compare(&map(&[("zstd", "1.5.4")]), &map(&[]));
        assert_eq!(row(&rows, "zstd").status, Status::UnknownHere);
    }

    #[test]
    fn the_0_1_0_manifest_reports_kernel_tools_as_not_recorded() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../release/0.1.0/build-manifest.json");
        let manifest = super::super::Manifest::load(&path).unwrap();
        let host = map(&[
            ("make", "4.3-4.1"),
            ("cc", "cc (Debian 12.2.0-14+deb12u1) 12.2.0"),
        ]);
        let rows = compare(&manifest.tools, &host);
        let make = row(&rows, "make");
        assert_eq!(make.status, Status::NotRecorded);
        assert!(make.difference().unwrap().contains("not recorded"));
        assert!(report(&rows).contains("make"));
        // What 0.1.0 did record is compared as usual.
        assert_eq!(row(&rows, "cc").status, Status::Same);
    }

    #[test]
    fn a_manifest_without_tools_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../release/0.1.0/build-manifest.json");
        let text = std::fs::read_to_string(path).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("tools");
        let manifest: super::super::Manifest = serde_json::from_value(value).unwrap();
        assert!(manifest.tools.is_empty());
        let rows = compare(&manifest.tools, &map(&[("rustc", "rustc 1.95.0")]));
        assert!(rows.iter().all(|r| r.status == Status::NotRecorded));
    }
}
