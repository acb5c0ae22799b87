//! The user documentation must say what the code does. These tests read the code (the Rust
//! sources, the generated CRDs, the metrics registry) and fail when docs/ does not name
//! something a user can meet: a condition reason, an Event reason, a spec field, a metric, or
//! when a link points to a file that does not exist. Each failure says what to add where.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The code of a Rust file without its unit tests: everything from the first `#[cfg(test)]`
/// line on is test code in this project (the test module closes each file).
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "#[cfg(test)]" {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// Every `.rs` file under `src/`, as (path relative to the repository, code without tests).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let relative = path
                .strip_prefix(repo())
                .expect("under the repository")
                .to_string_lossy()
                .into_owned();
            (relative, without_tests(&text).to_string())
        })
        .collect()
}

/// The Rust string literal at the start of `text` (after whitespace), if there is one.
fn leading_literal(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    None
}

/// The string literal passed as the first argument of each call `callee` (which ends with
/// `(`) in `text`; calls whose first argument is not a literal are skipped.
fn first_literal_arguments(text: &str, callee: &str) -> Vec<String> {
    text.match_indices(callee)
        .filter_map(|(at, _)| leading_literal(&text[at + callee.len()..]))
        .collect()
}

/// The lines of docs/api.md that are table rows.
fn table_rows(markdown: &str) -> Vec<&str> {
    markdown
        .lines()
        .filter(|line| line.trim_start().starts_with('|'))
        .collect()
}

fn fail_if_any(missing: &[String], what: &str) {
    assert!(
        missing.is_empty(),
        "{what}:\n  - {}\n",
        missing.join("\n  - ")
    );
}

// (a) Condition reasons -------------------------------------------------------------------

/// Every condition reason the operator can write, with where it comes from.
fn condition_reasons() -> Vec<(String, String)> {
    use cloudvol::controller::reasons::Reason;
    let mut reasons: Vec<(String, String)> = Reason::ALL
        .iter()
        .map(|r| {
            (
                r.as_str().to_string(),
                "src/controller/reasons.rs, Reason".to_string(),
            )
        })
        .collect();

    for reason in cloud_error_reasons() {
        reasons.push((
            reason,
            "src/cloud/error.rs, CloudError::reason() (through cloud_error_health)".into(),
        ));
    }

    use cloudvol::cloud::model::{ImageStatus, VolumeStatus};
    use cloudvol::controller::states;
    let unknown_volume = VolumeStatus::Unknown("not-a-seed-status".into());
    for status in VolumeStatus::KNOWN.iter().chain([&unknown_volume]) {
        reasons.push((
            states::volume_reason(status),
            format!(
                "the volume state {:?} (src/controller/states.rs, volume_reason)",
                status.as_str()
            ),
        ));
    }
    let unknown_image = ImageStatus::Unknown("not-a-seed-status".into());
    for status in ImageStatus::KNOWN.iter().chain([&unknown_image]) {
        reasons.push((
            states::image_reason(status),
            format!(
                "the image state {:?} (src/controller/states.rs, image_reason)",
                status.as_str()
            ),
        ));
    }
    reasons
}

/// The reasons of an ImageShare's writes: condition reasons while the write is under way, and
/// Event reasons once it is made.
fn share_write_reasons() -> Vec<(String, String)> {
    use cloudvol::cloud::model::Visibility;
    use cloudvol::controller::share::decide::Write;
    [
        Write::SetVisibility,
        Write::AddMember(String::new()),
        Write::AcceptAs(String::new()),
        Write::RemoveMember(String::new()),
        Write::RestoreVisibility(Visibility::Private),
    ]
    .iter()
    .map(|w| {
        (
            w.reason().as_str().to_string(),
            "src/controller/share/decide.rs, Write::reason".to_string(),
        )
    })
    .collect()
}

/// The string literals in the body of `CloudError::reason()`.
fn cloud_error_reasons() -> Vec<String> {
    let code = read("src/cloud/error.rs");
    let code = without_tests(&code);
    let start = code
        .find("pub fn reason(&self)")
        .expect("src/cloud/error.rs defines CloudError::reason()");
    let body = &code[start..];
    let end = body
        .find("\n    }\n")
        .expect("the end of CloudError::reason()");
    body[..end]
        .match_indices("=> ")
        .filter_map(|(at, _)| leading_literal(&body[at + 3..]))
        .collect()
}

#[test]
fn every_condition_reason_is_in_the_api_reference() {
    let reasons = condition_reasons();
    // A scanner that finds nothing would pass anything: make sure it sees the code.
    let distinct: BTreeSet<&str> = reasons.iter().map(|(r, _)| r.as_str()).collect();
    for expected in [
        "VolumeInUse",
        "ImageProtected",
        "CloudUnavailable",
        "InUse",
        "Active",
    ] {
        assert!(
            distinct.contains(expected),
            "the scan of src/ did not find the reason {expected}; fix tests/docs.rs"
        );
    }
    assert!(
        cloud_error_reasons().len() >= 10,
        "the scan of CloudError::reason() found too little; fix tests/docs.rs"
    );

    let api = read("docs/api.md");
    let rows = table_rows(&api);
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for (reason, origin) in &reasons {
        if !seen.insert(reason.clone()) {
            continue;
        }
        let cell = format!("`{reason}`");
        if !rows.iter().any(|row| row.contains(&cell)) {
            missing.push(format!("{cell}, from {origin}"));
        }
    }
    fail_if_any(
        &missing,
        "docs/api.md has no table row for these condition reasons; add a row for each to the \
         table of condition reasons in docs/api.md (kinds, which condition is True, what it \
         means, what to do)",
    );
}

#[test]
fn every_event_reason_is_in_the_api_reference() {
    let mut reasons = Vec::new();
    for (file, code) in sources() {
        for (at, _) in code.match_indices(".event(") {
            // `.event(EventType::Normal, "Reason", ...)`: the reason follows the type.
            let rest = code[at + ".event(".len()..].trim_start();
            let Some(rest) = rest.strip_prefix("EventType::") else {
                continue;
            };
            let Some(comma) = rest.find(',') else {
                continue;
            };
            if let Some(reason) = leading_literal(&rest[comma + 1..]) {
                reasons.push((reason, file.clone()));
            }
        }
    }
    assert!(
        reasons.iter().any(|(r, _)| r == "VolumeDisappeared"),
        "the scan of src/ found no Event reasons; fix tests/docs.rs"
    );
    // An ImageShare's writes record an Event with their reason too.
    reasons.extend(share_write_reasons());
    let api = read("docs/api.md");
    let rows = table_rows(&api);
    let missing: Vec<String> = reasons
        .iter()
        .filter(|(reason, _)| !rows.iter().any(|row| row.contains(&format!("`{reason}`"))))
        .map(|(reason, file)| format!("`{reason}`, recorded in {file}"))
        .collect();
    fail_if_any(
        &missing,
        "docs/api.md has no table row for these Event reasons; add them to the table of Events \
         in docs/api.md (kind, type, when it is recorded)",
    );
}

// (b) Spec fields ---------------------------------------------------------------------------

/// The dotted paths (relative to `spec`, `[]` for list items) of every field under `schema`.
fn field_paths(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.push(path.clone());
            field_paths(child, &path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        field_paths(items, &format!("{prefix}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        field_paths(extra, &format!("{prefix}.*"), out);
    }
}

#[test]
fn every_spec_field_is_in_the_api_reference() {
    let api = read("docs/api.md");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("crds"))
        .expect("crds/ exists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "crds/ holds the three CRDs");
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable CRD");
        let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text)
            .unwrap_or_else(|err| panic!("{} is not YAML: {err}", file.display()));
        let crd = documents
            .into_iter()
            .find(|d| !d.is_null())
            .unwrap_or_else(|| panic!("{} holds no document", file.display()));
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(
            spec.is_object(),
            "{} has no spec schema at spec.versions[0].schema.openAPIV3Schema.properties.spec",
            file.display()
        );
        let mut paths = Vec::new();
        field_paths(spec, "", &mut paths);
        for path in paths {
            checked += 1;
            let short = format!("`{path}`");
            let long = format!("`spec.{path}`");
            if !api.contains(&short) && !api.contains(&long) {
                missing.push(format!(
                    "{short} of {kind} ({})",
                    file.strip_prefix(repo()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "the CRD walk found only {checked} fields; fix tests/docs.rs"
    );
    fail_if_any(
        &missing,
        "docs/api.md does not mention these spec fields; add each, written as its path from \
         spec in backticks (for example `resource.size` or `spec.resource.size`), to the \
         kind's field table in docs/api.md with its type, default, validation and mutability",
    );
}

// (c) Links ----------------------------------------------------------------------------------

/// Pages other people are writing in other branches. A link to one of them may dangle until
/// it lands; once the file exists, its links are checked like any other. Nothing else may
/// be missing.
const PENDING_PAGES: &[&str] = &["docs/imageshare.md", "docs/openstack.md"];

/// The link targets of a Markdown text: inline links and images `[..](target)` and reference
/// definitions `[..]: target`, outside fenced code blocks and inline code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans: `[a](b)` inside backticks is not a link.
        let mut text = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                text.push(c);
            }
        }
        if let Some(rest) = text.trim_start().strip_prefix('[')
            && let Some(close) = rest.find("]:")
            && !rest[..close].contains(']')
        {
            if let Some(target) = rest[close + 2..].split_whitespace().next() {
                targets.push(target.trim_matches(['<', '>']).to_string());
            }
            continue;
        }
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else {
                continue;
            };
            let inside = rest[..end].trim();
            let target = inside
                .strip_prefix('<')
                .and_then(|t| t.split_once('>').map(|(t, _)| t))
                .unwrap_or_else(|| inside.split_whitespace().next().unwrap_or(""));
            targets.push(target.to_string());
        }
    }
    targets
}

/// `base/relative` with `.` and `..` resolved, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The anchors GitHub gives the headings of a Markdown text: lower case, spaces as `-`,
/// punctuation other than `-` and `_` dropped, and `-1`, `-2`, ... on repeats.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !trimmed.starts_with('#') {
            continue;
        }
        let title = trimmed.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

#[test]
fn every_relative_link_points_to_a_file_that_exists() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.push(repo().join("README.md"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a readable page");
        let page_name = page
            .strip_prefix(repo())
            .unwrap_or(page)
            .display()
            .to_string();
        for target in link_targets(&text) {
            if let Some(anchor) = target.strip_prefix('#') {
                checked += 1;
                if !heading_anchors(&text).contains(anchor) {
                    broken.push(format!(
                        "{page_name} links to {target}, but has no heading with that anchor"
                    ));
                }
                continue;
            }
            let external =
                target.contains("://") || target.starts_with("mailto:") || target.is_empty();
            if external {
                continue;
            }
            let file = target.split(['#', '?']).next().unwrap_or("");
            let resolved = normalize(&page.parent().expect("a folder").join(file));
            checked += 1;
            if resolved.exists() {
                // A link to a heading of a Markdown page must find that heading.
                if let Some((_, anchor)) = target.split_once('#')
                    && resolved.extension().is_some_and(|e| e == "md")
                {
                    let page_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                    if !heading_anchors(&page_text).contains(anchor) {
                        broken.push(format!(
                            "{page_name} links to {target}, but {} has no heading with the \
                             anchor #{anchor}",
                            resolved.strip_prefix(repo()).unwrap_or(&resolved).display()
                        ));
                    }
                }
                continue;
            }
            let relative = resolved
                .strip_prefix(normalize(&repo()))
                .unwrap_or(&resolved)
                .to_string_lossy()
                .replace('\\', "/");
            if PENDING_PAGES.contains(&relative.as_str()) {
                continue;
            }
            broken.push(format!(
                "{page_name} links to {target}, but {relative} does not exist"
            ));
        }
    }
    assert!(
        checked > 10,
        "only {checked} relative links found; fix tests/docs.rs"
    );
    fail_if_any(
        &broken,
        "broken relative links; fix the link in the page named, or add the file it points to",
    );
}

#[test]
fn heading_anchors_are_the_ones_github_makes() {
    let text = "# API reference\n## `kubectl delete -f dir/` with the Secret in it\n\
                ```sh\n# not a heading\n```\n### error_deleting and DeleteFailed\n\
                ## Volume status\n## Volume status\n";
    let anchors: Vec<String> = heading_anchors(text).into_iter().collect();
    assert_eq!(
        anchors,
        vec![
            "api-reference",
            "error_deleting-and-deletefailed",
            "kubectl-delete--f-dir-with-the-secret-in-it",
            "volume-status",
            "volume-status-1",
        ]
    );
}

#[test]
fn the_link_scanner_reads_markdown_as_people_write_it() {
    let text = "See [api](api.md#conditions) and ![x](img.png \"t\").\n\
                `[not](a-link.md)` and [ext](https://example.com/x)\n\
                ```sh\n[inside](fence.md)\n```\n\
                [ref]: ../README.md\n";
    assert_eq!(
        link_targets(text),
        vec![
            "api.md#conditions".to_string(),
            "img.png".to_string(),
            "https://example.com/x".to_string(),
            "../README.md".to_string(),
        ]
    );
}

// (d) Metrics --------------------------------------------------------------------------------

#[test]
fn every_metric_is_in_the_metrics_page() {
    let code = read("src/metrics.rs");
    let code = without_tests(&code);
    let prefix = first_literal_arguments(code, "Registry::with_prefix(");
    assert_eq!(
        prefix.len(),
        1,
        "src/metrics.rs builds its registry with Registry::with_prefix(\"...\")"
    );
    let names = first_literal_arguments(code, "registry.register(");
    assert!(
        names.len() >= 5,
        "the scan of src/metrics.rs found {names:?}; fix tests/docs.rs"
    );
    let page = read("docs/metrics.md");
    let rows = table_rows(&page);
    // A row of the metrics table names the metric, exactly, in backticks.
    let has_row = |metric: &str| rows.iter().any(|row| row.contains(&format!("`{metric}`")));
    let registered = |metric: &str| rows.iter().any(|row| row.contains(&format!("`{metric}")));
    let mut missing: Vec<String> = names
        .iter()
        .map(|name| format!("{}_{name}", prefix[0]))
        .filter(|metric| !registered(metric))
        .map(|metric| format!("`{metric}` (registered in src/metrics.rs)"))
        .collect();

    // The names as Prometheus scrapes them: counters end in `_total`.
    use cloudvol::cloud::{RequestObserver, RequestRecord};
    let metrics = cloudvol::metrics::Metrics::new();
    metrics.reconciled("Volume", std::time::Duration::from_millis(1), Some("X"));
    metrics.object_ready("Volume", "ns/a", Some("True"));
    metrics.observe(&RequestRecord {
        service: "image",
        method: "GET",
        host: "127.0.0.1",
        status: Some(200),
        attempt: 1,
        elapsed: std::time::Duration::from_millis(1),
    });
    let exposition = metrics.encode();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let scraped = match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_string(),
        };
        if !has_row(&scraped) {
            missing.push(format!("`{scraped}` (a {kind}, as /metrics serves it)"));
        }
    }
    fail_if_any(
        &missing,
        "docs/metrics.md does not describe these metrics; add each, in backticks, to the table \
         of metrics in docs/metrics.md with its labels and meaning",
    );
}

// (e) GitOps status fixtures ------------------------------------------------------------------

/// The objects in `tests/packaging/status/` stand for what cloudvol writes (tests/packaging.rs
/// runs kstatus and the Argo CD check over them, and docs/gitops.md describes the results), so
/// every condition reason in them must be one the operator can write: a rule's `Reason`, a
/// cloud error's reason, or a cloud state's reason.
#[test]
fn every_reason_in_the_gitops_status_fixtures_is_one_the_operator_writes() {
    use cloudvol::cloud::model::{ImageStatus, VolumeStatus};
    use cloudvol::controller::reasons::Reason;
    use cloudvol::controller::states;

    let mut writable: BTreeSet<String> =
        Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    writable.extend(cloud_error_reasons());
    let unknown_volume = VolumeStatus::Unknown("not-a-seed-status".into());
    writable.extend(
        VolumeStatus::KNOWN
            .iter()
            .chain([&unknown_volume])
            .map(states::volume_reason),
    );
    let unknown_image = ImageStatus::Unknown("not-a-seed-status".into());
    writable.extend(
        ImageStatus::KNOWN
            .iter()
            .chain([&unknown_image])
            .map(states::image_reason),
    );
    for expected in [
        "VolumeInUse",
        "CloudUnavailable",
        "Error",
        "Active",
        "UnknownStatus",
    ] {
        assert!(
            writable.contains(expected),
            "the list of writable reasons lacks {expected}; fix tests/docs.rs"
        );
    }

    let dir = repo().join("tests/packaging/status");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "tests/packaging/status/ holds only {} fixtures; fix tests/docs.rs",
        files.len()
    );
    let mut unwritable = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file
            .strip_prefix(repo())
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).expect("a readable fixture");
        let object: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let conditions = object["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for condition in conditions {
            checked += 1;
            let reason = condition["reason"].as_str().unwrap_or_default();
            if !writable.contains(reason) {
                unwritable.push(format!(
                    "{name}: condition {} has reason {reason:?}",
                    condition["type"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    assert!(
        checked >= 10,
        "only {checked} conditions found in the fixtures; fix tests/docs.rs"
    );
    fail_if_any(
        &unwritable,
        "these status fixtures use reasons the operator never writes; use a reason from \
         src/controller/reasons.rs, CloudError::reason() in src/cloud/error.rs, or a cloud \
         state's reason (src/controller/states.rs), as docs/api.md lists them",
    );
}
