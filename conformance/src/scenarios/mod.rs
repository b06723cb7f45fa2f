//! The scenarios, each a public async function over a [`StoreFactory`](crate::StoreFactory).

mod election;
pub mod mixed;
mod safety;
mod store;

pub use election::*;
pub use safety::*;
pub use store::*;
