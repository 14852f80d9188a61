//! Concurrency recipes on the client: [`Session`], [`Mutex`], [`Election`] and STM ([`stm::run`]).
//!
//! They follow etcd's Go `concurrency` package, with its known pitfalls fixed: a lost lock or
//! leadership is reported ([`Mutex::lost`], [`Election::lost`]) and every release is fenced;
//! waiting writes nothing and stops when the waiter's session ends; a failed
//! [`Mutex::try_lock`] writes nothing; two handles on one session exclude each other; a
//! campaign re-checks its key before reporting leadership; [`Observer`] sees every leader in
//! order and ends with its error; STM retries are bounded and end with a typed
//! [`ConcurrencyError::Conflict`].

pub mod election;
pub mod error;
pub mod mutex;
mod queue;
pub mod session;
pub mod stm;

pub use election::{Election, LeaderChange, Observer};
pub use error::{ConcurrencyError, Result};
pub use mutex::Mutex;
pub use queue::LostReason;
pub use session::{Session, SessionOptions};
pub use stm::{Committed, Isolation, Stm, StmOptions};
