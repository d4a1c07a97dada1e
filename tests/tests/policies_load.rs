//! Every shipped policy file loads.

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
