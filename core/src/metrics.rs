//! The leader gauge, client-go's `leader_election_master_status`, through
//! the `metrics` facade: 1 while this process leads the named lock, else 0.

/// The gauge's name, as client-go exports it.
pub const LEADER_GAUGE: &str = "leader_election_master_status";

pub(crate) fn leader_on(name: &str) {
    metrics::gauge!(LEADER_GAUGE, "name" => name.to_owned()).set(1.0);
}

pub(crate) fn leader_off(name: &str) {
    metrics::gauge!(LEADER_GAUGE, "name" => name.to_owned()).set(0.0);
}
