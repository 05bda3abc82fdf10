//! The contracts between llmgw services: code generated from `proto/`, plus
//! the exhaustive mapping of [`ErrorCode`] to gRPC and HTTP.

pub mod codec;
pub mod error;

/// Generated code, one module per proto package (`llmgw.<service>.v1`); the
/// nesting mirrors the packages so cross-package references resolve.
pub mod llmgw {
    pub mod error {
        pub mod v1 {
            tonic::include_proto!("llmgw.error.v1");
        }
    }
    pub mod limits {
        pub mod v1 {
            tonic::include_proto!("llmgw.limits.v1");
        }
    }
    pub mod router {
        pub mod v1 {
            tonic::include_proto!("llmgw.router.v1");
        }
    }
    pub mod billing {
        pub mod v1 {
            tonic::include_proto!("llmgw.billing.v1");
        }
    }
    pub mod quota {
        pub mod v1 {
            tonic::include_proto!("llmgw.quota.v1");
        }
    }
}

pub use error::ErrorCode;
pub use llmgw::billing::v1 as billing_v1;
pub use llmgw::error::v1 as error_v1;
pub use llmgw::limits::v1 as limits_v1;
pub use llmgw::quota::v1 as quota_v1;
pub use llmgw::router::v1 as router_v1;
