//! An encrypted repository holds none of the backed-up content, file names,
//! paths, tags or host names in the clear.
use crate::common;

use std::path::Path;

use common::*;

/// Whether any file below `dir` contains `needle`; returns the first file.
fn find_in_files(dir: &Path, needle: &[u8]) -> Option<String> {
    let mut found = None;
    walk(dir, &mut |p, md| {
        if found.is_none() && md.is_file() {
            let data = std::fs::read(p).unwrap();
            if data.windows(needle.len()).any(|w| w == needle) {
                found = Some(p.display().to_string());
            }
        }
    });
    found
}

fn build(src: &Path, content: &str, name: &str) {
    std::fs::create_dir_all(src.join("docs")).unwrap();
    // Compressible text with the marker repeated.
    std::fs::write(src.join("docs/notes.txt"), format!("the secret is {content}\n").repeat(2000)).unwrap();
    // Incompressible data with the marker inserted once, in the middle.
    let mut data = Rng::new(42).bytes(3 << 20);
    let at = data.len() / 2;
    data.splice(at..at, content.bytes());
    std::fs::write(src.join("random.bin"), &data).unwrap();
    // A short file that is nothing but the marker (no compression at all).
    std::fs::write(src.join("short.txt"), content).unwrap();
    // The marker as a file name and as a directory name.
    std::fs::create_dir_all(src.join(format!("dir-{name}"))).unwrap();
    std::fs::write(src.join(format!("dir-{name}/{name}.txt")), b"x").unwrap();
}

#[test]
fn no_plaintext_in_repo() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let nonce = format!("{:016x}", Rng::new(std::process::id() as u64 ^ 0x5eed).next_u64());
    let content = format!("ARCA-CONTENT-MARKER-{nonce}");
    let name = format!("ARCA-NAME-MARKER-{nonce}");
    let tag = format!("ARCA-TAG-MARKER-{nonce}");
    let host = format!("ARCA-HOST-MARKER-{nonce}");
    let src = base.join("src");
    build(&src, &content, &name);

    // Default init encrypts: nothing readable in the repository.
    let arca = Arca::new(&base);
    arca.init();
    let meta = arca.backup(&[&src], &["--tag", &tag, "--host", &host]);
    assert_eq!(ju64(&meta, "files"), 4, "{meta}");
    assert_eq!(arca.snapshots().len(), 1);
    for (what, marker) in [("file content", &content), ("file name", &name), ("tag", &tag), ("host", &host)] {
        if let Some(file) = find_in_files(&arca.repo, marker.as_bytes()) {
            panic!("{what} marker {marker} appears in the clear in repository file {file}");
        }
    }
    // The source path is not in the clear either.
    if let Some(file) = find_in_files(&arca.repo, src.as_os_str().as_encoded_bytes()) {
        panic!("source path {} appears in the clear in repository file {file}", src.display());
    }
    // And the data round-trips, so the content really is in there.
    let target = base.join("target");
    arca.restore("latest", &target, &[]);
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());

    // Control: with `--encryption none`, asked for explicitly, the
    // incompressible content is stored as is, which shows the scan above can
    // find what it looks for.
    let plain = arca.at(&base.join("plain-repo"));
    let out = plain.run_json(&["init", "--encryption", "none"]).ok();
    let _ = out.json();
    plain.backup(&[&src], &[]);
    assert!(
        find_in_files(&plain.repo, content.as_bytes()).is_some(),
        "control failed: an unencrypted repository does not contain the content marker, so the scan proves nothing"
    );
}
