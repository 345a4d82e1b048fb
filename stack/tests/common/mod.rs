//! What the engine tests share.

use std::time::Instant;

use hotpair_stack::engine::{ConnId, ConnInfo, Service};
use smoltcp::socket::tcp;

/// A service that accepts every connection and never touches a socket:
/// the tests look at the engine's own rules.
pub struct Quiet;

impl Service for Quiet {
    type Conn = ();
    fn accept(&mut self, _: ConnId, _: &ConnInfo, _: Instant) {}
    fn drive(
        &mut self,
        _: ConnId,
        _: &mut (),
        _: &mut tcp::Socket<'_>,
        _: Instant,
    ) -> Option<Instant> {
        None
    }
    fn closed(&mut self, _: ConnId, _: ()) {}
    fn woken(&mut self, _: &mut Vec<ConnId>) {}
}
