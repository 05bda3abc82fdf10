pub mod tokens;

// The usage spool: the durable spool (`llmgw-spool`) over usage events,
// delivering to billing's `Ledger`.
pub mod spool;
#[cfg(test)]
mod tests;
