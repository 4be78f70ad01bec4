//! The server's shape, checked on its sources: no import cycle between the top-level modules of
//! `server/src` (each folder, or file, under `src/` is one), and no module outside the HTTP layer
//! (`src/http/`) names axum, hyper, tower-http or `http` types. Comments and string literals are
//! skipped; `use` trees are expanded, so `use crate::{a, b::c}` counts as using `a` and `b`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Crates whose types belong to the HTTP layer only.
const HTTP_CRATES: [&str; 5] = ["axum", "hyper", "hyper_util", "tower_http", "http"];

/// The folder holding the HTTP layer (routers, extractors, error mapping, the accept loop).
const HTTP_LAYER: &str = "http";

/// Each `.rs` file under `dir` as (path relative to `dir`, its code without comments and
/// literals).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("listing the sources") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(dir).expect("under src").to_string_lossy();
                let text = std::fs::read_to_string(&path).expect("reading a source");
                found.push((relative.replace('\\', "/"), code_only(&text)));
            }
        }
    }
    found.sort();
    found
}

/// The text of a Rust file without comments, string and character literals.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let (mut out, mut i) = (String::new(), 0);
    let at = |i: usize, s: &str| chars[i..].iter().take(s.len()).copied().eq(s.chars());
    while i < chars.len() {
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            loop {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if chars[i] == 'r' && (at(i + 1, "\"") || at(i + 1, "#")) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            i += 2 + hashes;
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.len();
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if chars[i] == '\'' && (at(i + 1, "\\") || at(i + 2, "'")) {
            // A character literal (a lifetime has no closing quote two characters later).
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Every path a `use` tree names, expanded: `crate::{a, b::{self, c}}` gives `crate::a`,
/// `crate::b`, `crate::b::c`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let join = |rest: &str| match (prefix.is_empty(), rest) {
        (_, "self") => prefix.to_owned(),
        (true, _) => rest.to_owned(),
        (false, _) => format!("{prefix}::{rest}"),
    };
    match tree.find('{') {
        Some(open) => {
            let head = tree[..open].trim_end_matches("::");
            let prefix = if head.is_empty() {
                prefix.to_owned()
            } else {
                join(head)
            };
            let (mut depth, mut start) = (0, open + 1);
            for (i, c) in tree.char_indices().skip(open) {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        expand(&prefix, &tree[start..i], out);
                        start = i + 1;
                        depth -= usize::from(c == '}');
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        }
        None if !tree.is_empty() => out.push(join(tree.split(" as ").next().unwrap_or(tree))),
        None => {}
    }
}

/// The paths a file names: its `use` trees expanded, then the paths written in its code.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code.to_owned();
    while let Some(start) = word_at(&rest, "use") {
        let end = start + rest[start..].find(';').expect("a `use` ends with `;`");
        expand("", &rest[start + 3..end], &mut found);
        rest.replace_range(start..=end, "");
    }
    let bytes = rest.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for (i, _) in rest.match_indices("::") {
        let first = (0..i).rev().take_while(|&j| ident(bytes[j])).last();
        let Some(first) = first.filter(|&j| j < 2 || &bytes[j - 2..j] != b"::") else {
            continue;
        };
        let tail: String = rest[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.push(format!("{}::{tail}", &rest[first..i]));
    }
    found
}

/// Where the keyword `word` starts a statement in `code`, if anywhere.
fn word_at(code: &str, word: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    code.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = i.checked_sub(1).map_or(b' ', |j| bytes[j]);
        let after = bytes.get(i + word.len()).copied().unwrap_or(b' ');
        !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
            && after.is_ascii_whitespace()
    })
}

/// The top-level module of a file under `src/`: `http` for `http/routes/auth.rs`.
fn top_module(file: &str) -> String {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs").to_owned()
}

/// The `crate::` imports between top-level modules, and the files that name HTTP types.
fn survey(files: &[(String, String)]) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let (mut graph, mut speaks_http) = (BTreeMap::<_, BTreeSet<_>>::new(), Vec::new());
    for (file, code) in files {
        let module = top_module(file);
        let named = paths(code);
        // `http::x` is the crate's own layer wherever the file imported `crate::http`.
        let own_http = named.iter().any(|p| p == "crate::http");
        for path in &named {
            let mut segments = path.split("::");
            match (segments.next(), segments.next()) {
                (Some("crate"), Some(to)) if !to.is_empty() && to != module => {
                    graph
                        .entry(module.clone())
                        .or_default()
                        .insert(to.to_owned());
                }
                (Some("http"), _) if own_http => {}
                (Some(krate), _) if HTTP_CRATES.contains(&krate) && module != HTTP_LAYER => {
                    speaks_http.push(format!("{file}: {path}"));
                }
                _ => {}
            }
        }
    }
    (graph, speaks_http)
}

/// A cycle of the graph as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            return Some([&path[at..], &[node.to_owned()]].concat());
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn server_sources() -> Vec<(String, String)> {
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let (graph, _) = survey(&server_sources());
    // The survey sees the imports it should: the HTTP layer calls the upload service.
    assert!(graph["http"].contains("uploads"), "{graph:?}");
    assert!(graph["uploads"].contains("storage"), "{graph:?}");
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
}

#[test]
fn only_the_http_layer_names_http_types() {
    let files = server_sources();
    let in_http_layer = files
        .iter()
        .filter(|(file, _)| top_module(file) == HTTP_LAYER)
        .any(|(_, code)| paths(code).iter().any(|p| p.starts_with("axum::")));
    assert!(in_http_layer, "the survey finds axum where it is");
    let (_, speaks_http) = survey(&files);
    assert!(speaks_http.is_empty(), "{speaks_http:#?}");
}

#[test]
fn the_survey_catches_a_cycle_and_http_types_outside_the_http_layer() {
    let files = [
        ("a/mod.rs", "use crate::{b::{self, X}, c as d};"),
        (
            "b.rs",
            "// crate::c\nfn f() { let s = \"axum::Router\"; crate::a::g(s) }",
        ),
        (
            "c.rs",
            "use axum::{extract::State, Router};\nfn f(x: hyper::Body) {}",
        ),
        (
            "d.rs",
            "use crate::http::{self, App};\nfn f(app: http::App) {}",
        ),
        ("e.rs", "fn f() -> http::StatusCode { todo!() }"),
    ]
    .map(|(file, text)| (file.to_owned(), code_only(text)));
    let (graph, speaks_http) = survey(&files);
    assert_eq!(graph["b"], BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(
        speaks_http,
        [
            "c.rs: axum::extract::State",
            "c.rs: axum::Router",
            "c.rs: hyper::Body",
            "e.rs: http::StatusCode",
        ]
    );
}
