//! The tenure behaviour suite on each Kubernetes lock, against the in-repo
//! API server fixture — or, with `TENURE_K8S_REAL=1` and `KUBECONFIG` set,
//! against that cluster (see the README).

mod common;

mod lease {
    use super::common::{Kind, KubeFactory};

    async fn factory() -> KubeFactory {
        KubeFactory::start(Kind::Lease).await
    }

    tenure_conformance::conformance_tests!(factory);
    tenure_conformance::conformance_tests!(factory; hung_store_fails_within_the_request_timeout);
}

mod configmap {
    use super::common::{Kind, KubeFactory};

    async fn factory() -> KubeFactory {
        KubeFactory::start(Kind::ConfigMap).await
    }

    tenure_conformance::conformance_tests!(factory);
    tenure_conformance::conformance_tests!(factory; hung_store_fails_within_the_request_timeout);
}

mod multilock {
    use super::common::{Kind, KubeFactory};

    async fn factory() -> KubeFactory {
        KubeFactory::start(Kind::Multi).await
    }

    tenure_conformance::conformance_tests!(factory);
    tenure_conformance::conformance_tests!(factory; hung_store_fails_within_the_request_timeout);
}
