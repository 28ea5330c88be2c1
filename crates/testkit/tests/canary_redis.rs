//! A test that leaves a canary in its Redis fails when the server is dropped, naming it.

use std::io::{Read, Write};
use std::net::TcpStream;

use churnguard_testkit::{RedisServer, canary};

fn set(redis: &RedisServer, key: &str, value: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect");
    s.write_all(format!("SET {key} \"{value}\"\r\n").as_bytes())
        .expect("send");
    let mut ok = [0u8; 5];
    s.read_exact(&mut ok).expect("reply");
    assert_eq!(&ok, b"+OK\r\n");
}

#[test]
fn a_clean_keyspace_passes() {
    let redis = RedisServer::start();
    set(&redis, "customer:c-1", "a value with nothing secret");
    drop(redis);
}

#[test]
#[should_panic(expected = "canary leak: [\"the contact's phone\"] found in Redis")]
fn a_contact_left_in_redis_fails_the_test() {
    let redis = RedisServer::start();
    // In a hash among others (a listpack, stored as one blob): still found.
    let mut s = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect");
    s.write_all(
        format!(
            "HSET complaint:c-9 store s-1 phone \"{}\" level 2\r\n",
            canary::CONTACT_PHONE
        )
        .as_bytes(),
    )
    .expect("send");
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).expect("reply");
    set(&redis, "other", "clean");
    drop(redis);
}
