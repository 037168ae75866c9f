// worker.js -- the seed's background-insert Worker on workers-qb 1.14.0:
// answer at once, insert the log row under ctx.waitUntil().  /hello is the
// same runtime's floor, for the same-run ratio.
import { D1QB } from 'workers-qb';

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/hello') {
      return new Response('hello', { headers: { 'content-type': 'text/plain' } });
    }
    const qb = new D1QB(env.DB);
    ctx.waitUntil(
      qb
        .insert({
          tableName: 'logs',
          data: {
            method: request.method,
            path: url.pathname,
            timestamp: new Date().toISOString(),
          },
        })
        .execute()
    );
    return new Response('Request logged in the background!');
  },
};
