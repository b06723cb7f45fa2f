//! The scenarios, each a public async function over a [`StoreFactory`](crate::StoreFactory).

mod election;
mod store;

pub use election::*;
pub use store::*;
