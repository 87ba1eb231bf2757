//! Strict outputs (attack review M3, M5's download part, and its unclear "temp files are never swept"): the one
//! writer of every `-o`, `OutputFile`, refuses to replace anything but a regular file, writes its temp file with
//! mode 0600, and removes the temp files that killed runs left for the same target, and nothing else.
#![cfg(unix)]
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use trialport_formats::convert::{
    convert, copy_to_file_expecting, ConvertOptions, OutputFile, Written, STALE_AFTER,
};

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo failed");
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn a_target_that_is_a_fifo_a_device_or_a_socket_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mkfifo(&d.join("fifo.csv"));
    std::os::unix::fs::symlink("/dev/null", d.join("null.csv")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(d.join("sock.csv")).unwrap();
    let mut targets = vec![
        ("fifo.csv", "fifo"),
        ("null.csv", "character_device"),
        ("sock.csv", "socket"),
    ];
    // As root, a device node of our own (the review replaced /dev/full this way).
    if is_root() {
        let ok = std::process::Command::new("mknod")
            .args(["-m", "666"])
            .arg(d.join("dev.csv"))
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        targets.push(("dev.csv", "character_device"));
    }
    let input = d.join("in.csv");
    fs::write(&input, "A\n1\n").unwrap();
    for (name, kind) in targets {
        let target = d.join(name);
        for overwrite in [true, false] {
            let e = OutputFile::create(&target, overwrite).unwrap_err();
            assert_eq!(
                (e.code().as_str(), e.reason(), e.field()),
                ("EXP002", "not_a_regular_file", Some("output")),
                "{name}"
            );
            assert_eq!(e.details()["kind"], kind);
        }
        let options = ConvertOptions {
            overwrite: true,
            ..ConvertOptions::default()
        };
        let e = convert(&input, &target, &options).unwrap_err();
        assert_eq!(e.reason(), "not_a_regular_file", "{name}");
    }
    // Each is still what it was, and nothing else was left.
    assert!(fs::symlink_metadata(d.join("fifo.csv"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read_link(d.join("null.csv")).unwrap(),
        Path::new("/dev/null")
    );
    assert!(fs::symlink_metadata(d.join("sock.csv"))
        .unwrap()
        .file_type()
        .is_socket());
    if is_root() {
        assert!(fs::symlink_metadata(d.join("dev.csv"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
    assert!(
        names(d).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        names(d)
    );
}

#[test]
fn a_fifo_put_at_the_target_while_writing_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(b"data").unwrap();
    mkfifo(&target);
    let e = f.commit().unwrap_err();
    assert_eq!(e.reason(), "not_a_regular_file");
    assert!(fs::symlink_metadata(&target).unwrap().file_type().is_fifo());
    assert_eq!(names(dir.path()), ["out.csv"]);
}

#[test]
fn the_temp_file_and_a_new_output_are_owner_only_and_a_replaced_file_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dm.csv");
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(&vec![b'x'; 3 << 20]).unwrap();
    f.flush().unwrap();
    let temps: Vec<String> = names(dir.path());
    assert_eq!(temps.len(), 1);
    assert!(
        temps[0].starts_with(".dm.csv.partial-") && temps[0].len() == ".dm.csv.partial-".len() + 16,
        "{temps:?}"
    );
    assert_eq!(mode(&dir.path().join(&temps[0])), 0o600);
    f.commit().unwrap();
    assert_eq!(mode(&target), 0o600);
    // Replacing a file the owner made group-readable keeps that choice.
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(b"new").unwrap();
    f.commit().unwrap();
    assert_eq!(mode(&target), 0o640);
    assert_eq!(fs::read(&target).unwrap(), b"new");
}

fn put(dir: &Path, name: &str, age: Duration) -> PathBuf {
    let p = dir.join(name);
    let f = fs::File::create(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

#[test]
fn stale_temp_files_of_the_target_are_swept_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fresh = Duration::ZERO;
    let old = STALE_AFTER + Duration::from_secs(60);
    // Swept: what killed runs leave for dm.csv.
    let swept = [
        put(d, ".dm.csv.partial-0123456789abcdef", fresh),
        put(d, ".dm.csv.tmp-4242-0-123456789", old),
        put(d, ".dm.csv.part-00112233445566ff", old),
    ];
    // Kept: the lock-less older namings while they may still be written, other targets' temp files, other
    // names, and anything that is not a regular file.
    let kept = [
        put(d, ".dm.csv.tmp-4242-1-123456789", fresh),
        put(d, ".dm.csv.part-aaaaaaaaaaaaaaaa", fresh),
        put(d, ".ae.csv.partial-0123456789abcdef", old),
        put(d, ".dm.csv.partial-0123", old),
        put(d, ".dm.csv.partial-0123456789ABCDEF", old),
        put(d, "dm.csv.partial-0123456789abcdef", old),
        put(d, ".dm.csv.tmp-0123456789abcdef", old),
        put(d, "dm.csv.bak", old),
    ];
    fs::create_dir(d.join(".dm.csv.partial-fedcba9876543210")).unwrap();
    std::os::unix::fs::symlink(
        d.join("dm.csv.bak"),
        d.join(".dm.csv.partial-1111111111111111"),
    )
    .unwrap();
    let mut f = OutputFile::create(&d.join("dm.csv"), true).unwrap();
    f.write_all(b"A\n").unwrap();
    f.commit().unwrap();
    for p in &swept {
        assert!(!p.exists(), "{} was not swept", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was swept", p.display());
    }
    assert!(d.join(".dm.csv.partial-fedcba9876543210").is_dir());
    assert!(fs::symlink_metadata(d.join(".dm.csv.partial-1111111111111111")).is_ok());
    assert!(d.join("dm.csv.bak").exists());
}

#[test]
fn the_temp_file_of_a_live_writer_is_not_swept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv");
    let mut first = OutputFile::create(&target, true).unwrap();
    first.write_all(b"first").unwrap();
    // A second writer of the same target sweeps before it starts: the first one's temp file is locked, so kept.
    let mut second = OutputFile::create(&target, true).unwrap();
    second.write_all(b"second").unwrap();
    assert_eq!(names(dir.path()).len(), 2);
    first.commit().unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"first");
    second.commit().unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"second");
    assert_eq!(names(dir.path()), ["out.csv"]);
}

#[test]
fn a_download_that_does_not_match_its_record_is_not_put_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ae.csv");
    let want = Written {
        bytes: 3,
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
    };
    let e = copy_to_file_expecting(&b"abd"[..], &target, true, Some(&want)).unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP005", "integrity_violation")
    );
    assert!(names(dir.path()).is_empty());
    let w = copy_to_file_expecting(&b"abc"[..], &target, true, Some(&want)).unwrap();
    assert_eq!(w, want);
    assert_eq!(mode(&target), 0o600);
}
