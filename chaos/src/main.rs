//! `tenure-chaos`: real `tenure run` candidates against real stores, under
//! the faults operators see, judged by a downstream that checks fencing
//! tokens and by the commands' heartbeat log.
//!
//! ```text
//! tenure-chaos run --store redis|etcd|etcd-cluster|k8s|k8s-fixture [--candidates cli|library|mixed]
//!                  [--rounds N] [--seed S] [--faults a,b,...] [--tenure PATH]
//! tenure-chaos shards --store redis|etcd [--rounds N] [--seed S] [--tenure PATH]
//!                                         (`tenure shard` replicas: see shards.rs)
//! tenure-chaos worker DOWNSTREAM[,...] LOG (the command each leader runs; one
//!                                         downstream per shard for `tenure shard`)
//! tenure-chaos candidate URL ID DOWNSTREAM LOG   (a library candidate)
//! tenure-chaos kube-api                   (the Kubernetes API fixture, as a process)
//! ```
//!
//! `run` prints one table row per fault and exits 1 if any stale write was
//! accepted or any two terms overlapped where they must not.

mod downstream;
mod harness;
mod kube;
mod library;
/// What /proc says about processes: the CLI's module, one copy (the
/// harness needs only part of it).
#[path = "../../cli/src/procfs.rs"]
#[allow(dead_code)]
mod procfs;
mod shards;
mod worker;

use std::process::ExitCode;

/// Now on the machine's `CLOCK_MONOTONIC`, in ns: one clock for every
/// process here. A raw system call, so that libfaketime (which skews a
/// candidate's clock, and is inherited by its command) cannot touch it.
pub fn mono_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the clock_gettime system call writes one timespec we own.
    unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_MONOTONIC,
            &mut ts as *mut libc::timespec,
        )
    };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: tenure-chaos run --store redis|etcd|etcd-cluster|k8s|k8s-fixture [--candidates cli|library|mixed] [--rounds N] [--seed S] [--faults F,...] [--tenure PATH]\n\
         faults: {}",
        harness::Fault::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") if args.len() == 3 => worker::main(&args[1], &args[2]),
        Some("candidate") if args.len() == 5 => {
            library::main(&args[1], &args[2], &args[3], &args[4])
        }
        Some("kube-api") => kube::main(),
        Some("run") => {
            let Some(options) = harness::Options::parse(&args[1..]) else {
                return usage();
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(harness::run(options)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("tenure-chaos: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("shards") => {
            // shards --store redis|etcd [--rounds N] [--seed S] [--tenure PATH]
            let value = |flag: &str| {
                args.iter()
                    .position(|a| a == flag)
                    .and_then(|i| args.get(i + 1))
                    .cloned()
            };
            let store = value("--store").unwrap_or_else(|| "redis".into());
            let rounds = value("--rounds").and_then(|r| r.parse().ok()).unwrap_or(6);
            let seed = value("--seed").and_then(|r| r.parse().ok()).unwrap_or(7);
            let tenure = value("--tenure")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::env::current_exe()
                        .map(|p| p.with_file_name("tenure"))
                        .unwrap_or_default()
                });
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(shards::run(&store, rounds, seed, tenure)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("tenure-chaos: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => usage(),
    }
}
