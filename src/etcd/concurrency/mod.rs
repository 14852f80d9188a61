//! Concurrency recipes on the client: Session, Mutex, Election and STM.
