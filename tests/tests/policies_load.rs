//! Every shipped policy file loads, and so does the format example in
//! `policies/README.md`.

use tollgate::Nanos;
use tollgate::policy::Engine;

#[test]
fn all_five_policies_load() {
    for name in ["s4e", "cybervault", "scanner-api", "blocksecops", "slim-io"] {
        let path = format!("{}/../policies/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).unwrap();
        let e = Engine::from_toml(&src, Nanos::ZERO).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(e.name(), name);
    }
}

/// `policies/README.md`, "The format in one screen": the first fenced
/// `toml` block, read from the README itself so the two cannot drift. It was
/// refused twice over: its `scan` class is only ever "unlimited" (refused
/// as undeclared), and it named plans (`anonymous`, `pro`) it never defined.
#[test]
fn readme_format_example_loads() {
    let path = format!("{}/../policies/README.md", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find("```toml\n").expect("a ```toml block") + "```toml\n".len();
    let len = readme[start..].find("```").expect("the block's end");
    let example = &readme[start..start + len];
    let e = Engine::from_toml(example, Nanos::ZERO)
        .unwrap_or_else(|e| panic!("{path}: the format example is refused: {e}"));
    assert_eq!(e.name(), "example");
    assert_eq!(e.plans(), ["free", "pro"]);
}
