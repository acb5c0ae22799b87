//! Generated files must match the Rust types they come from. Regenerate with `make crds`.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn crds_folder_matches_the_types() {
    let dir = repo().join("crds");
    let mut expected: Vec<String> = Vec::new();
    for crd in cloudvol::api::crds() {
        let name = cloudvol::api::crd_file_name(&crd);
        let path = dir.join(&name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == cloudvol::api::crd_yaml(&crd),
            "{} is out of date with src/api: run `make crds` and commit the result",
            path.display()
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(present, expected, "crds/ holds exactly one file per kind");
}
