//! The whole suite against the in-process `MemoryStore`.

async fn factory() -> tenure_conformance::MemoryFactory {
    tenure_conformance::MemoryFactory::new()
}

tenure_conformance::conformance_tests!(factory);

/// Negative controls of the safety scenarios: each run with the rule it
/// guards switched back to the unsafe one must fail. One thread, as a
/// planted bug is switched on per thread.
mod controls {
    use futures::FutureExt;
    use tenure_conformance::scenarios;
    use tenure_core::planted::{Bug, plant};

    async fn caught(bug: Bug, scenario: impl std::future::Future<Output = ()>) {
        plant(Some(bug));
        let outcome = std::panic::AssertUnwindSafe(scenario).catch_unwind().await;
        plant(None);
        assert!(outcome.is_err(), "{bug:?} planted, yet the scenario passed");
    }

    #[tokio::test]
    async fn deleted_record_taken_for_free_is_caught() {
        let f = super::factory().await;
        caught(
            Bug::DeletedRecordIsFree,
            scenarios::deleted_record_is_not_a_free_lock(&f),
        )
        .await;
    }

    #[tokio::test]
    async fn erased_record_taken_for_free_is_caught() {
        let f = super::factory().await;
        caught(
            Bug::ErasedRecordIsFree,
            scenarios::erased_record_is_not_a_free_lock(&f),
        )
        .await;
    }

    #[tokio::test]
    async fn foreign_write_taken_for_a_renewal_is_caught() {
        let f = super::factory().await;
        caught(
            Bug::ChangeByVersion,
            scenarios::foreign_write_is_not_a_renewal(&f),
        )
        .await;
    }
}
