//! The throttle's table and client addresses, with paused tokio time.

use super::*;

fn throttle(config: AuthThrottleConfig) -> AuthThrottle {
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    AuthThrottle::new(&config, Metrics::new())
}

fn address(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn forwarded(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", value.parse().expect("header"));
    headers
}

#[tokio::test(start_paused = true)]
async fn an_address_is_throttled_after_max_failures_until_its_window_ends() {
    let throttle = throttle(AuthThrottleConfig {
        max_failures: 3,
        window_secs: 60,
        ..AuthThrottleConfig::default()
    });
    let attacker = address("203.0.113.7");
    let other = address("203.0.113.8");
    for _ in 0..2 {
        throttle.failed(attacker);
        assert_eq!(throttle.throttled(attacker), None);
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    throttle.failed(attacker);
    // The window runs from the first failure: 50 s left.
    assert_eq!(throttle.throttled(attacker), Some(Duration::from_secs(50)));
    assert_eq!(throttle.throttled(other), None);
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(throttle.throttled(attacker), None);
    // A new window starts from scratch.
    throttle.failed(attacker);
    assert_eq!(throttle.throttled(attacker), None);
}

#[tokio::test(start_paused = true)]
async fn zero_max_failures_never_throttles() {
    let throttle = throttle(AuthThrottleConfig {
        max_failures: 0,
        ..AuthThrottleConfig::default()
    });
    let attacker = address("203.0.113.7");
    for _ in 0..100 {
        throttle.failed(attacker);
    }
    assert_eq!(throttle.throttled(attacker), None);
}

#[tokio::test(start_paused = true)]
async fn the_table_stays_bounded_and_forgets_the_oldest_first() {
    let throttle = throttle(AuthThrottleConfig {
        max_failures: 1,
        window_secs: 600,
        max_tracked_addresses: 100,
        ..AuthThrottleConfig::default()
    });
    for n in 0..1_000u32 {
        throttle.failed(IpAddr::from(n.to_be_bytes()));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(throttle.table.lock().expect("lock").len() <= 100);
    }
    // The newest addresses are still throttled, the first ones forgotten.
    assert!(
        throttle
            .throttled(IpAddr::from(999u32.to_be_bytes()))
            .is_some()
    );
    assert_eq!(throttle.throttled(IpAddr::from(0u32.to_be_bytes())), None);
}

#[test]
fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
    let untrusting = throttle(AuthThrottleConfig::default());
    let peer = address("198.51.100.1");
    // Without trusted proxies, X-Forwarded-For is anyone's to forge.
    assert_eq!(untrusting.client(peer, &forwarded("203.0.113.7")), peer);
    let trusting = throttle(AuthThrottleConfig {
        trusted_proxies: vec!["10.0.0.0/8".into(), "192.0.2.1".into()],
        ..AuthThrottleConfig::default()
    });
    assert_eq!(
        trusting.client(peer, &forwarded("203.0.113.7")),
        peer,
        "an untrusted peer's header is ignored"
    );
    let proxy = address("10.1.2.3");
    assert_eq!(
        trusting.client(proxy, &forwarded("203.0.113.7")),
        address("203.0.113.7")
    );
    // A client's own (forged) entries sit left of what our proxies added.
    assert_eq!(
        trusting.client(proxy, &forwarded("1.2.3.4, 203.0.113.7, 192.0.2.1")),
        address("203.0.113.7")
    );
    // No header: the proxy itself.
    assert_eq!(trusting.client(proxy, &HeaderMap::new()), proxy);
    // An IPv4-mapped IPv6 peer is the IPv4 address.
    assert_eq!(
        trusting.client(address("::ffff:10.1.2.3"), &forwarded("203.0.113.9")),
        address("203.0.113.9")
    );
}

#[test]
fn cidrs_parse_and_match() {
    let net = Cidr::parse("10.0.0.0/8").expect("cidr");
    assert!(net.contains(address("10.255.0.1")));
    assert!(!net.contains(address("11.0.0.1")));
    let v6 = Cidr::parse("2001:db8::/32").expect("cidr");
    assert!(v6.contains(address("2001:db8:1::1")));
    assert!(!v6.contains(address("2001:db9::1")));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .expect("cidr")
            .contains(address("8.8.8.8"))
    );
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("not-an-address").is_err());
    let config = AuthThrottleConfig {
        trusted_proxies: vec!["10.0.0.0/99".into()],
        ..AuthThrottleConfig::default()
    };
    assert_eq!(config.validate().len(), 1);
}
