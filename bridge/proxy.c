/*
 * proxy.c - parse the PROXY protocol header (HAProxy's specification,
 * versions 1 and 2) that a load balancer sends before the client's bytes.
 *
 * proxy_parse() looks at the bytes read so far from the start of a
 * connection and says one of: PROXY_MORE (they are the beginning of a
 * header, read on), PROXY_BAD (not a header: h->error says why), or the
 * number of bytes that decide the header, with h filled in.  For version 1
 * that is the whole line through its CRLF; for version 2 it is the 16-byte
 * head and the address block, and h->total says how many bytes the header
 * has with its TLVs (which the bridge skips).  The caller never reads past
 * h->total, so what follows (an HTTP request, a TLS ClientHello) stays in
 * the socket for lws.
 *
 * Per the specification: version 1 "UNKNOWN" and version 2 LOCAL, and a
 * version 2 PROXY of an unspecified or unix family, carry no client
 * address (health checks, or what the proxy could not express): family 0,
 * the connection's own peer is the client.  Anything else a receiver does
 * not understand is refused, never guessed at.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

static int
bad(struct proxy_header *h, const char *why)
{
	h->error = why;
	return PROXY_BAD;
}

/* A decimal port, 0..65535, without a sign or leading zeros. */
static bool
parse_port(const char *s, size_t n, int *port)
{
	int			v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = v;
	return true;
}

/* "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", or "PROXY UNKNOWN...\r\n" */
static int
parse_v1(const uint8_t *buf, size_t len, struct proxy_header *h)
{
	const char *s = (const char *) buf;
	const char *fields[5];
	size_t		flen[5];
	size_t		end = 0, i, nf = 0;
	int			family;
	uint8_t		bin[16];

	h->version = 1;
	while (end < len && end < PROXY_V1_MAX && buf[end] != '\n')
		end++;
	if (end == len && len < PROXY_V1_MAX)
		return PROXY_MORE;
	if (end >= PROXY_V1_MAX || end < 1 || buf[end - 1] != '\r')
		return bad(h, end >= PROXY_V1_MAX ? "version 1 line longer than 107 bytes"
				   : "version 1 line not ended by CRLF");
	h->total = end + 1;
	end--;						/* at the CR */
	for (i = 0; i < end; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return bad(h, "version 1 line with a control or non-ASCII byte");
	s += sizeof(v1_sig) - 1;
	end -= sizeof(v1_sig) - 1;
	if (end >= 7 && !memcmp(s, "UNKNOWN", 7))
	{
		h->family = 0;			/* the rest of the line is ignored */
		return (int) h->total;
	}
	/* five fields, single spaces */
	for (i = 0; i <= end && nf < 5;)
	{
		size_t		j = i;

		while (j < end && s[j] != ' ')
			j++;
		fields[nf] = s + i;
		flen[nf++] = j - i;
		if (j == end)
			break;
		i = j + 1;
	}
	if (nf != 5 || fields[4] + flen[4] != s + end)
		return bad(h, "version 1 line without protocol, two addresses and two ports");
	if (flen[0] == 4 && !memcmp(fields[0], "TCP4", 4))
		family = AF_INET;
	else if (flen[0] == 4 && !memcmp(fields[0], "TCP6", 4))
		family = AF_INET6;
	else
		return bad(h, "version 1 protocol not TCP4, TCP6 or UNKNOWN");
	for (int f = 1; f <= 2; f++)
	{
		char		a[46];

		if (flen[f] == 0 || flen[f] >= sizeof(a))
			return bad(h, "version 1 address malformed");
		memcpy(a, fields[f], flen[f]);
		a[flen[f]] = '\0';
		if (inet_pton(family, a, bin) != 1)
			return bad(h, "version 1 address malformed or not of its protocol's family");
		if (f == 1)
			memcpy(h->addr, a, flen[f] + 1);
	}
	{
		int			dport;

		if (!parse_port(fields[3], flen[3], &h->port) || !parse_port(fields[4], flen[4], &dport))
			return bad(h, "version 1 port malformed");
	}
	/* as the bridge writes addresses everywhere: normalized */
	if (inet_pton(family, h->addr, bin) == 1)
		inet_ntop(family, bin, h->addr, sizeof(h->addr));
	h->family = family;
	return (int) h->total;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct proxy_header *h)
{
	size_t		body, need;
	int			cmd, fam, proto;

	h->version = 2;
	if (len < PROXY_V2_HEAD)
		return PROXY_MORE;
	if ((buf[12] >> 4) != 2)
		return bad(h, "version 2 header of another version");
	cmd = buf[12] & 0x0f;
	fam = buf[13] >> 4;
	proto = buf[13] & 0x0f;
	body = (size_t) buf[14] << 8 | buf[15];
	h->total = PROXY_V2_HEAD + body;
	if (cmd > 1)
		return bad(h, "version 2 command neither LOCAL nor PROXY");
	if (fam > 3 || proto > 2)
		return bad(h, "version 2 family or transport unknown");
	need = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
	if (cmd == 1 && body < need)
		return bad(h, "version 2 address block shorter than its family's");
	if (cmd == 0 || fam == 0 || fam == 3 || proto != 1)
	{
		/*
		 * LOCAL (the proxy's own connection, a health check), or an
		 * address the bridge cannot use (unspecified, unix, datagram):
		 * the connection's own peer it is.
		 */
		if (cmd == 1 && proto == 2)
			return bad(h, "version 2 datagram on a stream listener");
		h->family = 0;
		return PROXY_V2_HEAD;
	}
	if (len < PROXY_V2_HEAD + need)
		return PROXY_MORE;
	if (fam == 1)
	{
		h->family = AF_INET;
		inet_ntop(AF_INET, buf + 16, h->addr, sizeof(h->addr));
		h->port = buf[24] << 8 | buf[25];
	}
	else
	{
		h->family = AF_INET6;
		inet_ntop(AF_INET6, buf + 16, h->addr, sizeof(h->addr));
		h->port = buf[48] << 8 | buf[49];
	}
	return (int) (PROXY_V2_HEAD + need);
}

int
proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h)
{
	size_t		n;

	memset(h, 0, sizeof(*h));
	if (len == 0)
		return PROXY_MORE;
	if (buf[0] == v1_sig[0])
	{
		n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
		if (memcmp(buf, v1_sig, n))
			return bad(h, "no PROXY header");
		return n < sizeof(v1_sig) - 1 ? PROXY_MORE : parse_v1(buf, len, h);
	}
	n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (memcmp(buf, v2_sig, n))
		return bad(h, "no PROXY header");
	return n < sizeof(v2_sig) ? PROXY_MORE : parse_v2(buf, len, h);
}
