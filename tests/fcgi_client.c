/*
 * fcgi_client.c -- see fcgi_client.h.  Record layout from the FastCGI 1.0
 * specification: 8-byte header (version, type, id, content length,
 * padding length), name-value pairs with 1- or 4-byte lengths.
 */
#define _GNU_SOURCE
#include "fcgi_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { BEGIN = 1, END = 3, PARAMS = 4, STDIN_T = 5, STDOUT_T = 6 };

int fc_connect_unix(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

size_t fc_record(unsigned char *buf, size_t cap, int type, int id,
                 const void *content, size_t len)
{
    if (len > 65535 || cap < 8 || cap - 8 < len)
        return 0;
    buf[0] = 1;
    buf[1] = (unsigned char)type;
    buf[2] = (unsigned char)(id >> 8);
    buf[3] = (unsigned char)id;
    buf[4] = (unsigned char)(len >> 8);
    buf[5] = (unsigned char)len;
    buf[6] = 0;
    buf[7] = 0;
    if (len)
        memcpy(buf + 8, content, len);
    return 8 + len;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t put_len(unsigned char *p, size_t n)
{
    if (n < 128) {
        p[0] = (unsigned char)n;
        return 1;
    }
    p[0] = (unsigned char)(0x80 | (n >> 24));
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return 4;
}

/* Send data of one stream type in records of at most 65535 bytes, then
 * the empty record that ends the stream. */
static int send_stream(int fd, int type, const unsigned char *p, size_t n)
{
    static unsigned char rec[8 + 65535];
    do {
        size_t chunk = n > 65535 ? 65535 : n;
        size_t len = fc_record(rec, sizeof rec, type, 1, p, chunk);
        if (write_all(fd, rec, len) != 0)
            return -1;
        p += chunk;
        n -= chunk;
        if (chunk == 0)
            return 0;
    } while (1);
}

static long read_until(int fd, int timeout_ms, unsigned char **buf,
                       size_t *len)
{
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&pfd, 1, timeout_ms) <= 0)
            break;
        if (cap - *len < 65536) {
            unsigned char *nb = realloc(*buf, cap + 131072);
            if (nb == NULL)
                break;
            *buf = nb;
            cap += 131072;
        }
        r = read(fd, *buf + *len, cap - *len);
        if (r <= 0)
            break;
        *len += (size_t)r;
    }
    return (long)*len;
}

int fc_request(const char *sock, const char *const *params, const void *body,
               size_t body_len, int timeout_ms, char **out, int *status)
{
    unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* RESPONDER */
    unsigned char rec[16];
    unsigned char *pbuf = NULL, *resp = NULL;
    size_t plen = 0, pcap = 0, rlen = 0, off = 0;
    char *text = NULL;
    size_t tlen = 0;
    int fd, rc = -1;

    *out = NULL;
    *status = 0;
    for (size_t i = 0; params && params[i]; i++) {
        const char *eq = strchr(params[i], '=');
        size_t nl = eq ? (size_t)(eq - params[i]) : strlen(params[i]);
        size_t vl = eq ? strlen(eq + 1) : 0;
        if (pcap - plen < nl + vl + 8) {
            unsigned char *nb = realloc(pbuf, pcap + nl + vl + 4096);
            if (nb == NULL)
                goto done;
            pbuf = nb;
            pcap += nl + vl + 4096;
        }
        plen += put_len(pbuf + plen, nl);
        plen += put_len(pbuf + plen, vl);
        memcpy(pbuf + plen, params[i], nl);
        plen += nl;
        if (vl)
            memcpy(pbuf + plen, eq + 1, vl);
        plen += vl;
    }
    fd = fc_connect_unix(sock);
    if (fd < 0)
        goto done;
    if (write_all(fd, rec, fc_record(rec, sizeof rec, BEGIN, 1, begin, 8)) ||
        send_stream(fd, PARAMS, pbuf, plen) ||
        send_stream(fd, STDIN_T, body, body ? body_len : 0)) {
        close(fd);
        goto done;
    }
    read_until(fd, timeout_ms, &resp, &rlen);
    close(fd);
    text = malloc(rlen + 1);
    if (text == NULL)
        goto done;
    /* Concatenate STDOUT records; stop at END_REQUEST. */
    while (rlen - off >= 8) {
        size_t clen = ((size_t)resp[off + 4] << 8) | resp[off + 5];
        size_t pad = resp[off + 6];
        int type = resp[off + 1];
        if (rlen - off - 8 < clen + pad)
            break;
        if (type == STDOUT_T) {
            memcpy(text + tlen, resp + off + 8, clen);
            tlen += clen;
        }
        off += 8 + clen + pad;
        if (type == END) {
            rc = 0;
            break;
        }
    }
    text[tlen] = '\0';
    if (rc == 0) {
        const char *s = strstr(text, "Status: ");
        *status = s ? atoi(s + 8) : 200;
    }
    *out = text;
    text = NULL;
done:
    free(text);
    free(pbuf);
    free(resp);
    return rc;
}

long fc_raw(const char *sock, const void *bytes, size_t n, int timeout_ms)
{
    unsigned char *resp = NULL;
    size_t rlen = 0;
    long got;
    int fd = fc_connect_unix(sock);
    if (fd < 0)
        return -1;
    if (write_all(fd, bytes, n) != 0) {
        close(fd);
        return -1;
    }
    shutdown(fd, SHUT_WR);
    got = read_until(fd, timeout_ms, &resp, &rlen);
    free(resp);
    close(fd);
    return got;
}
