pub mod tokens;

// The durable usage spool and its sender to billing.
#[doc(hidden)]
pub mod bench;
mod segment;
pub mod sender;
pub mod spool;
#[cfg(test)]
mod tests;
mod writer;
