/*
 * fuzz_proxy.c - libFuzzer target: PROXY protocol headers (proxy.c) as a
 * connection's first bytes, fed whole and in every prefix, as a socket
 * would deliver them.  The oracle: a prefix of a decided input never
 * decides differently from the whole (PROXY_MORE, or the same result
 * once enough is there); a decided header is within what was given (its
 * deciding length), at most 107 bytes for version 1 and 16 + 65535 for
 * version 2, and names a parseable address of its family or none; a
 * refusal says why.
 */
#include "../proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *data, size_t size, int r, const struct proxy_header *h)
{
	unsigned char bin[16];

	if (r == PROXY_BAD)
	{
		if (!h->error || !h->error[0])
			abort();
		return;
	}
	if (r == PROXY_MORE)
		return;
	if ((size_t) r > size || (size_t) r > h->total)
		abort();
	if (h->version == 1 && (h->total > PROXY_V1_MAX || h->total != (size_t) r))
		abort();
	if (h->version == 2 && (h->total > PROXY_V2_HEAD + 65535 || (size_t) r > PROXY_BUF))
		abort();
	if (h->family && (inet_pton(h->family, h->addr, bin) != 1 || h->port < 0 || h->port > 65535))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header whole, part;
	int			r = proxy_parse(data, size, &whole);

	check(data, size, r, &whole);
	for (size_t n = 0; n < size && n <= PROXY_BUF; n++)
	{
		int			p = proxy_parse(data, n, &part);

		check(data, n, p, &part);
		if (r == PROXY_MORE && p != PROXY_MORE)
		{
			fprintf(stderr, "prefix of %zu decided %d, the whole %zu bytes undecided\n", n, p, size);
			abort();
		}
		if (r == PROXY_BAD && p > 0)
		{
			fprintf(stderr, "prefix of %zu accepted, the whole %zu bytes refused\n", n, size);
			abort();
		}
		if (r > 0 && p != PROXY_MORE && (p != r || part.family != whole.family ||
										 strcmp(part.addr, whole.addr) || part.total != whole.total))
		{
			fprintf(stderr, "prefix of %zu decided %d, the whole %d\n", n, p, r);
			abort();
		}
	}
	return 0;
}
