//! `OutputFile`, the atomic output file shared by `convert`, downloads and the CLI's other outputs: nothing is
//! visible before `commit`, and nothing is left behind without it.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use trialport_formats::convert::OutputFile;

#[test]
fn a_dropped_output_file_leaves_nothing_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.txt");
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(b"partial").unwrap();
    assert!(!target.exists());
    drop(f);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    fs::write(&target, b"old").unwrap();
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(b"partial").unwrap();
    drop(f);
    assert_eq!(fs::read(&target).unwrap(), b"old");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_committed_output_file_replaces_the_old_one_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.txt");
    fs::write(&target, b"old").unwrap();
    let mut f = OutputFile::create(&target, true).unwrap();
    f.write_all(b"abc").unwrap();
    // The old file stays visible until the commit.
    assert_eq!(fs::read(&target).unwrap(), b"old");
    let w = f.commit().unwrap();
    assert_eq!(w.bytes, 3);
    // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
    assert_eq!(
        w.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(fs::read(&target).unwrap(), b"abc");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_missing_directory_or_a_directory_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = OutputFile::create(&dir.path().join("no/out.txt"), true).unwrap_err();
    assert_eq!((e.code().as_str(), e.field()), ("EXP001", Some("output")));
    let e = OutputFile::create(dir.path(), true).unwrap_err();
    assert_eq!(e.code().as_str(), "EXP002");
}
