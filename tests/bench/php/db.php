<?php
// db.php -- one PDO SQLite connection per request (PHP's usual shared-
// nothing model), WAL journal, 5 s busy timeout.  $sync names a PRAGMA
// synchronous value; null keeps SQLite's build default (FULL on Debian 12),
// which is what the peer baselines measured.
function bench_db(?string $sync = null): PDO {
    $db = new PDO('sqlite:' . getenv('BENCH_DB'));
    $db->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
    $db->setAttribute(PDO::ATTR_TIMEOUT, 5);
    $db->exec('PRAGMA journal_mode=WAL');
    if ($sync !== null) {
        $db->exec('PRAGMA synchronous=' . $sync);
    }
    return $db;
}

function bench_log_row(PDO $db): void {
    $st = $db->prepare('INSERT INTO logs (method, path, timestamp) VALUES (?, ?, ?)');
    $path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
    $now = DateTime::createFromFormat('U.u', sprintf('%.6F', microtime(true)));
    $st->execute([$_SERVER['REQUEST_METHOD'], $path, $now->format('Y-m-d\TH:i:s.v\Z')]);
}
