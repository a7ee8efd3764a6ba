//! Our cpio newc archives read back by GNU cpio (the Debian `cpio` package): names, order,
//! modes, owners, sizes, contents and symlinks; plus determinism and alignment properties
//! over random trees, checked by an independent walk of the format.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)] // test code: a panic is a failure

mod common;

use ccc_eif::SourceDateEpoch;
use ccc_eif::cpio::{Archive, FileMode};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const EPOCH: SourceDateEpoch = SourceDateEpoch::from_secs(1_700_000_000);

/// Runs `cpio ARGS` in `dir` with `input` on stdin; returns stdout.
fn gnu_cpio(args: &[&str], dir: &Path, input: &[u8]) -> String {
    common::require_tool("cpio", "cpio");
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One entry as decoded by an independent walk of the newc format.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    offset: usize,
    name: Vec<u8>,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    data: Vec<u8>,
}

/// Walks an archive, asserting the layout rules on the way (magic, 4-byte alignment of
/// every header and data block, NUL-terminated names, zero padding, trailer last).
fn walk(archive: &[u8]) -> Vec<Entry> {
    assert_eq!(archive.len() % 4, 0, "archive length is a multiple of 4");
    let field = |at: usize, i: usize| {
        let text = std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    };
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        assert_eq!(at % 4, 0, "header at {at} is 4-byte aligned");
        assert_eq!(&archive[at..at + 6], b"070701", "magic at {at}");
        for i in [7, 8, 9, 10, 12] {
            assert_eq!(field(at, i), 0, "device numbers and check are 0");
        }
        let namesize = field(at, 11) as usize;
        let filesize = field(at, 6) as usize;
        let name_end = at + 110 + namesize;
        assert_eq!(archive[name_end - 1], 0, "name is NUL-terminated");
        let name = archive[at + 110..name_end - 1].to_vec();
        let data_at = name_end.next_multiple_of(4);
        assert!(archive[name_end..data_at].iter().all(|b| *b == 0));
        let data_end = data_at + filesize;
        let next = data_end.next_multiple_of(4);
        assert!(archive[data_end..next].iter().all(|b| *b == 0));
        if name == b"TRAILER!!!" {
            assert_eq!(next, archive.len(), "the trailer ends the archive");
            return entries;
        }
        entries.push(Entry {
            offset: at,
            name,
            ino: field(at, 0),
            mode: field(at, 1),
            uid: field(at, 2),
            gid: field(at, 3),
            nlink: field(at, 4),
            mtime: field(at, 5),
            data: archive[data_at..data_end].to_vec(),
        });
        at = next;
    }
}

fn sample() -> Archive {
    let mut a = Archive::new(EPOCH);
    a.add_file(
        "init",
        b"#!/bin/sh\nexec app\n".to_vec(),
        FileMode::Executable,
    )
    .unwrap();
    a.add_dir("dev").unwrap();
    a.add_file(
        "rootfs/etc/hostname",
        b"enclave\n".to_vec(),
        FileMode::Regular,
    )
    .unwrap();
    a.add_file("rootfs/empty", Vec::new(), FileMode::Regular)
        .unwrap();
    a.add_file("rootfs/one", vec![1], FileMode::Regular)
        .unwrap();
    a.add_file("rootfs/three", vec![1, 2, 3], FileMode::Executable)
        .unwrap();
    a.add_file(
        "rootfs/bin/app",
        common::bytes(7, 10_001),
        FileMode::Executable,
    )
    .unwrap();
    a.add_symlink("rootfs/bin/sh", "app").unwrap();
    a.add_symlink("rootfs/abs", "/etc/hostname").unwrap();
    a.add_file(
        "rootfs/caf\u{e9}",
        b"utf-8 name".to_vec(),
        FileMode::Regular,
    )
    .unwrap();
    a.add_dir("rootfs/tmp").unwrap();
    a
}

#[test]
fn gnu_cpio_lists_our_entries_in_order_with_fixed_metadata() {
    let archive = sample().to_vec().unwrap();
    let dir = common::scratch_dir("cpio-list");
    let names = gnu_cpio(&["-t", "--quiet"], &dir, &archive);
    let expected = [
        "dev",
        "init",
        "rootfs",
        "rootfs/abs",
        "rootfs/bin",
        "rootfs/bin/app",
        "rootfs/bin/sh",
        "rootfs/caf\u{e9}",
        "rootfs/empty",
        "rootfs/etc",
        "rootfs/etc/hostname",
        "rootfs/one",
        "rootfs/three",
        "rootfs/tmp",
    ];
    assert_eq!(names.lines().collect::<Vec<_>>(), expected);

    // Verbose listing: mode string, link count, numeric owner, size, name.
    let verbose = gnu_cpio(&["-tv", "--quiet", "--numeric-uid-gid"], &dir, &archive);
    let rows: BTreeMap<String, Vec<String>> = verbose
        .lines()
        .map(|line| {
            let cols: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            (cols[8].clone(), cols)
        })
        .collect();
    let check = |name: &str, mode: &str, nlink: &str, size: &str| {
        let row = &rows[name];
        assert_eq!(
            (
                &row[0][..],
                &row[1][..],
                &row[2][..],
                &row[3][..],
                &row[4][..]
            ),
            (mode, nlink, "0", "0", size),
            "{name}: {row:?}"
        );
    };
    check("dev", "drwxr-xr-x", "2", "0");
    check("init", "-rwxr-xr-x", "1", "19");
    // rootfs has bin, etc and tmp below it.
    check("rootfs", "drwxr-xr-x", "5", "0");
    check("rootfs/bin/app", "-rwxr-xr-x", "1", "10001");
    check("rootfs/bin/sh", "lrwxrwxrwx", "1", "3");
    check("rootfs/empty", "-rw-r--r--", "1", "0");
    check("rootfs/three", "-rwxr-xr-x", "1", "3");
    assert_eq!(
        rows["rootfs/bin/sh"][9..],
        ["->".to_owned(), "app".to_owned()]
    );
    // 1700000000 = 2023-11-14T22:13:20Z.
    assert_eq!(rows["init"][5..8], ["Nov", "14", "2023"]);
}

#[test]
fn gnu_cpio_extracts_our_contents_modes_and_links() {
    let archive = sample().to_vec().unwrap();
    let dir = common::scratch_dir("cpio-extract");
    gnu_cpio(
        &[
            "-i",
            "--quiet",
            "--make-directories",
            "--preserve-modification-time",
            "--no-absolute-filenames",
        ],
        &dir,
        &archive,
    );
    let mode = |p: &str| {
        std::fs::symlink_metadata(dir.join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(
        std::fs::read(dir.join("init")).unwrap(),
        b"#!/bin/sh\nexec app\n"
    );
    assert_eq!(mode("init"), 0o100_755);
    assert_eq!(mode("dev"), 0o040_755);
    assert_eq!(mode("rootfs/etc/hostname"), 0o100_644);
    assert_eq!(mode("rootfs/tmp"), 0o040_755);
    assert_eq!(
        std::fs::read(dir.join("rootfs/bin/app")).unwrap(),
        common::bytes(7, 10_001)
    );
    assert_eq!(std::fs::read(dir.join("rootfs/empty")).unwrap(), b"");
    assert_eq!(std::fs::read(dir.join("rootfs/three")).unwrap(), [1, 2, 3]);
    assert_eq!(
        std::fs::read_link(dir.join("rootfs/bin/sh")).unwrap(),
        Path::new("app")
    );
    assert_eq!(
        std::fs::read_link(dir.join("rootfs/abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    assert_eq!(
        std::fs::read(dir.join("rootfs/caf\u{e9}")).unwrap(),
        b"utf-8 name"
    );
    let mtime = std::fs::metadata(dir.join("rootfs/etc/hostname"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    );
}

#[test]
fn host_tree_round_trips_through_gnu_cpio_and_ignores_host_metadata() {
    let src = common::scratch_dir("cpio-host-src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/tool"), b"tool").unwrap();
    std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(src.join("data"), common::bytes(3, 4097)).unwrap();
    std::fs::set_permissions(src.join("data"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("bin/tool", src.join("link")).unwrap();
    std::fs::create_dir(src.join("empty")).unwrap();

    let mut a = Archive::new(EPOCH);
    a.add_host_tree("rootfs", &src).unwrap();
    let first = a.to_vec().unwrap();
    assert_eq!(first.len() as u64, a.encoded_len());

    // The same tree built in memory gives the same bytes: host metadata is ignored.
    let mut b = Archive::new(EPOCH);
    b.add_dir("rootfs/empty").unwrap();
    b.add_symlink("rootfs/link", "bin/tool").unwrap();
    b.add_file("rootfs/data", common::bytes(3, 4097), FileMode::Regular)
        .unwrap();
    b.add_file("rootfs/bin/tool", b"tool".to_vec(), FileMode::Executable)
        .unwrap();
    assert_eq!(b.to_vec().unwrap(), first);

    let out = common::scratch_dir("cpio-host-out");
    gnu_cpio(&["-i", "--quiet", "--make-directories"], &out, &first);
    assert_eq!(
        std::fs::read(out.join("rootfs/data")).unwrap(),
        common::bytes(3, 4097)
    );
    assert_eq!(
        std::fs::metadata(out.join("rootfs/bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // A host file that changes size after it was added is caught at write time.
    std::fs::write(src.join("data"), b"shorter").unwrap();
    let err = a.to_vec().unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while the archive was written"),
        "{err}"
    );
}

#[test]
fn host_tree_rejects_special_files() {
    let src = common::scratch_dir("cpio-fifo");
    let status = Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut a = Archive::new(EPOCH);
    let err = a.add_host_tree("", &src).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a regular file, directory or symlink"),
        "{err}"
    );
}

/// A random tree: directory names `dN`, file names `fN`, so no file is another's parent.
fn tree() -> impl Strategy<Value = Vec<(String, Vec<u8>, bool)>> {
    let path = prop::collection::vec(0u8..3, 0..4).prop_flat_map(|dirs| {
        (0u8..6).prop_map(move |file| {
            let mut parts: Vec<String> = dirs.iter().map(|d| format!("d{d}")).collect();
            parts.push(format!("f{file}"));
            parts.join("/")
        })
    });
    prop::collection::vec(
        (
            path,
            prop::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
        ),
        0..24,
    )
}

fn build(files: &[(String, Vec<u8>, bool)], order: &[usize]) -> Archive {
    let mut a = Archive::new(EPOCH);
    let mut seen = std::collections::BTreeSet::new();
    for &i in order {
        let (path, data, exec) = &files[i];
        if !seen.insert(path.clone()) {
            continue;
        }
        let mode = if *exec {
            FileMode::Executable
        } else {
            FileMode::Regular
        };
        a.add_file(path, data.clone(), mode).unwrap();
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn same_tree_same_bytes_whatever_the_insertion_order(
        files in tree(),
        seed in any::<u64>(),
    ) {
        // Keep only the first occurrence of each path, then insert in two different orders.
        let mut unique: Vec<(String, Vec<u8>, bool)> = Vec::new();
        for f in files {
            if !unique.iter().any(|u| u.0 == f.0) {
                unique.push(f);
            }
        }
        let forward: Vec<usize> = (0..unique.len()).collect();
        let mut shuffled = forward.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let a = build(&unique, &forward).to_vec().unwrap();
        let b = build(&unique, &shuffled).to_vec().unwrap();
        prop_assert_eq!(&a, &b);

        // Independent walk: alignment, sorted names, sequential inodes, fixed owner/mtime,
        // every file present with its bytes, and every parent directory before its children.
        let entries = walk(&a);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        prop_assert_eq!(&names, &sorted);
        for (i, e) in entries.iter().enumerate() {
            prop_assert_eq!(e.ino as usize, i + 1);
            prop_assert_eq!((e.uid, e.gid, e.mtime), (0, 0, EPOCH.secs()));
            prop_assert_eq!(e.offset % 4, 0);
            if let Some(slash) = e.name.iter().rposition(|b| *b == b'/') {
                prop_assert!(names[..i].contains(&&e.name[..slash]), "parent precedes child");
            }
            if e.mode & 0o170_000 == 0o040_000 {
                let prefix = [e.name.as_slice(), b"/"].concat();
                let subdirs = entries.iter().filter(|o| {
                    o.mode & 0o170_000 == 0o040_000
                        && o.name.starts_with(&prefix)
                        && !o.name[prefix.len()..].contains(&b'/')
                }).count();
                prop_assert_eq!(e.nlink as usize, 2 + subdirs);
            } else {
                prop_assert_eq!(e.nlink, 1);
            }
        }
        for (path, data, exec) in &unique {
            let e = entries.iter().find(|e| e.name == path.as_bytes()).unwrap();
            prop_assert_eq!(&e.data, data);
            prop_assert_eq!(e.mode, if *exec { 0o100_755 } else { 0o100_644 });
        }
    }

    #[test]
    fn random_trees_are_4_byte_aligned_and_gnu_cpio_lists_them(
        files in tree(),
    ) {
        let order: Vec<usize> = (0..files.len()).collect();
        let archive = build(&files, &order);
        let bytes = archive.to_vec().unwrap();
        prop_assert_eq!(bytes.len() as u64, archive.encoded_len());
        prop_assert_eq!(bytes.len() % 4, 0);
        let dir = common::scratch_dir("cpio-prop");
        let listed = gnu_cpio(&["-t", "--quiet"], &dir, &bytes);
        let walked: Vec<String> = walk(&bytes)
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        prop_assert_eq!(listed.lines().collect::<Vec<_>>(), walked);
    }
}
