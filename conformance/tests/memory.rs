//! The whole suite against the in-process `MemoryStore`.

async fn factory() -> tenure_conformance::MemoryFactory {
    tenure_conformance::MemoryFactory::new()
}

tenure_conformance::conformance_tests!(factory);
