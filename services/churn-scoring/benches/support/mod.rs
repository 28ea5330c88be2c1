//! What churn-scoring's benchmarks share: how they read the CPU time Redis and the
//! benchmark's own process have spent.

/// CPU seconds Redis has used (INFO cpu: user + system of the main thread and children).
pub async fn redis_cpu_secs(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("info");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// CPU seconds this process has used (user + system), from /proc.
pub fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name in parentheses; utime and stime are 14th and 15th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}
