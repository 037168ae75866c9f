<?php
// deferred.php with PRAGMA synchronous=NORMAL, the durability waituntil's
// shipped conf uses: the like-for-like comparison.
require __DIR__ . '/db.php';
header('Content-Type: text/plain');
echo 'Request logged in the background!';
fastcgi_finish_request();
bench_log_row(bench_db('NORMAL'));
