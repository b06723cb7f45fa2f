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
}

mod configmap {
    use super::common::{Kind, KubeFactory};

    async fn factory() -> KubeFactory {
        KubeFactory::start(Kind::ConfigMap).await
    }

    tenure_conformance::conformance_tests!(factory);
}

mod multilock {
    use super::common::{Kind, KubeFactory};

    async fn factory() -> KubeFactory {
        KubeFactory::start(Kind::Multi).await
    }

    tenure_conformance::conformance_tests!(factory);
}

/// The suites again with every candidate of a scenario on one client and
/// one [`SharedWatch`](tenure_k8s::SharedWatch) (the faulty ones excepted:
/// each has a client of its own behind a proxy).
mod shared_watch {
    mod lease {
        use crate::common::{Kind, KubeFactory};

        async fn factory() -> KubeFactory {
            KubeFactory::start_shared(Kind::Lease).await
        }

        // The scenarios where candidates share the watch and the request
        // slots (see the Redis and etcd suites for why not all).
        tenure_conformance::conformance_tests!(shared factory);
    }

    mod multilock {
        use crate::common::{Kind, KubeFactory};

        async fn factory() -> KubeFactory {
            KubeFactory::start_shared(Kind::Multi).await
        }

        // The scenarios where candidates share the watch and the request
        // slots (see the Redis and etcd suites for why not all).
        tenure_conformance::conformance_tests!(shared factory);
    }
}
