//! The codec of every generated client and server: prost, with 512-byte
//! buffers instead of tonic's 8 KiB.
//!
//! Each call encodes into a fresh buffer on each side and decodes into
//! another, so tonic's default costs four 8 KiB allocations per unary call,
//! most of a request's allocated bytes (`cargo bench -p llmgw --bench
//! allocations`: 192 KB a request before, 102 KB after), for messages
//! mostly under 300 bytes. glibc serves blocks under 1 KiB from its
//! per-thread cache and small bins; larger ones take its slow path, which
//! first consolidates the freed small blocks. A larger message (a long
//! prompt) grows its buffer as it needs; a stream's encoder starts another
//! block when one is full.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of each encode and decode buffer.
const BUFFER_BYTES: usize = 512;
/// tonic's default: how much a stream may encode before it yields.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// `tonic_prost::ProstCodec` with [`BUFFER_BYTES`] buffers (named in
/// `build.rs` as the generated code's codec).
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
