//! The whole suite against the in-process `MemoryStore`.

async fn factory() -> tenure_conformance::MemoryFactory {
    tenure_conformance::MemoryFactory::new()
}

tenure_conformance::conformance_tests!(factory);
// This store keeps a token floor across deletion.
tenure_conformance::conformance_tests!(factory; fencing_token_rises_across_deletion);
