<?php
// Insert, then answer: the synchronous baseline.
require __DIR__ . '/db.php';
bench_log_row(bench_db());
header('Content-Type: text/plain');
echo 'Request logged before answering.';
