-- Ends a wrk run with one line the bench parses: the counts of the
-- summary and latency percentiles, in microseconds.
--   wrk-report requests=N duration_us=N ... p50_us=N p99_us=N max_us=N

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "wrk-report requests=%d duration_us=%d bytes=%d connect_errors=%d"
      .. " read_errors=%d write_errors=%d status_errors=%d timeouts=%d"
      .. " p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, errors.connect,
    errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
