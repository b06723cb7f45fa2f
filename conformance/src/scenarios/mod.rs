//! The scenarios, each a public async function over a [`StoreFactory`](crate::StoreFactory).

mod election;
mod faults;
pub mod mixed;
mod safety;
mod shards;
mod store;

pub use election::*;
pub use faults::*;
pub use safety::*;
pub use shards::*;
pub use store::*;
