<?php
// Answer, end the FastCGI response with fastcgi_finish_request(), then
// insert: PHP-FPM's "respond now, write later".  The child stays busy
// until the insert is done.
require __DIR__ . '/db.php';
header('Content-Type: text/plain');
echo 'Request logged in the background!';
fastcgi_finish_request();
bench_log_row(bench_db());
