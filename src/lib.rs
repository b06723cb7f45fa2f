//! # tenure
//!
//! Leader election for Rust services, on the store they already run.
//! This crate re-exports [`tenure_core`]; store backends are turned on
//! with features.
#![warn(missing_docs)]

pub use tenure_core::*;
