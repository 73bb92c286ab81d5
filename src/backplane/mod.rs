//! A Redis (or Valkey) pub/sub backplane for topics across processes (cargo feature
//! `redis`).

mod link;

pub use link::{Link, LinkConfig, LinkEvent, LinkStats, RedisUrl, WhileDown};
