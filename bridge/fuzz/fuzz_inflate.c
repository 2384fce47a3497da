/*
 * fuzz_inflate.c - libFuzzer target: compressed WebSocket messages through
 * the bridge's own inflater (deflate.c, included for its private structs).
 *
 * The first byte of an input sets the connection: window bits 9..15
 * (byte % 7 + 9) and, with bit 3, context takeover.  Then come messages,
 * each a record: an op byte, a 16-bit length, that many bytes.  Op bit 0
 * set: the bytes are plaintext that the harness compresses as a client
 * would (raw deflate, the negotiated window, the stream kept between
 * messages under context takeover, the 00 00 ff ff tail stripped); clear:
 * the bytes are sent as compressed payload as they are.  Op bit 7: an
 * uncompressed message instead (lws' to pass).  Bits 1-6: the frame size
 * the message is cut into (0: one frame), with an empty first frame when
 * they are all set.  Each frame goes through deflate_extension() as lws
 * hands it over.  The oracle: a message the harness compressed inflates
 * to exactly its plaintext unless the connection was refused before it,
 * arbitrary bytes went into the context it shares with earlier messages,
 * or the message passes --max-message (4096 here), which must be
 * refused or marked; invalid data may only end in a refusal (1007 or
 * 1002), never in a crash; after the session ends no inflater is parked.
 */
#include "harness.h"
#include "../deflate.c"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct deflate_state state;
static int	refused_code;

static struct deflate_state *
state_fn(struct lws *wsi)
{
	return &state;
}

static void
refuse_fn(struct lws *wsi, int code, const char *reason)
{
	if (code != LWS_CLOSE_STATUS_INVALID_PAYLOAD && code != LWS_CLOSE_STATUS_PROTOCOL_ERR &&
		code != LWS_CLOSE_STATUS_UNEXPECTED_CONDITION)
		abort();
	if (!refused_code)
		refused_code = code;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	harness_init();
	srv.cfg.max_message = 4096;
	deflate_set_hooks(state_fn, refuse_fn);
	return 0;
}

/* Compress one message as a permessage-deflate client does. */
static unsigned char *
client_deflate(z_stream *z, const uint8_t *in, size_t n, size_t *outlen)
{
	size_t		cap = n + n / 4 + 64;
	unsigned char *out = malloc(cap);
	int			rc;

	if (!out)
		abort();
	z->next_in = (unsigned char *) in;
	z->avail_in = (uInt) n;
	z->next_out = out;
	z->avail_out = (uInt) cap;
	rc = deflate(z, Z_SYNC_FLUSH);
	*outlen = cap - z->avail_out;
	if (rc == Z_BUF_ERROR && !n && !*outlen)
	{
		/* nothing new to flush: an empty message is one 0x00 byte (RFC 7692 7.2.3.6) */
		out[0] = 0;
		*outlen = 1;
		return out;
	}
	if (rc != Z_OK || z->avail_in)
		abort();
	if (*outlen < 4 || memcmp(out + *outlen - 4, "\x00\x00\xff\xff", 4))
		abort();
	*outlen -= 4;
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake_wsi w = {0};
	z_stream	client = {0};
	size_t		pos = 1;
	bool		foreign = false;	/* bytes not of our deflater went into a kept context */
	unsigned char *got = malloc(srv.cfg.max_message + 2);

	if (!size || !got)
	{
		free(got);
		return 0;
	}
	memset(&state, 0, sizeof(state));
	state.who = "a fuzzer";
	state.window = data[0] % 7 + 9;
	state.context = data[0] & 8;
	refused_code = 0;
	if (deflateInit2(&client, 6, Z_DEFLATED, -state.window, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	w.user = NULL;

	while (pos + 3 <= size)
	{
		uint8_t		op = data[pos];
		size_t		len = (size_t) data[pos + 1] << 8 | data[pos + 2];
		const uint8_t *payload = data + pos + 3;
		unsigned char *wire;
		size_t		wire_len, frame, got_len = 0;
		bool		ours = op & 1, plain = op & 0x80, empty_first = (op & 0x7e) == 0x7e;
		bool		refused_before = refused_code != 0, too_big = false;

		if (len > size - pos - 3)
			len = size - pos - 3;
		pos += 3 + len;
		if (ours && !plain)
		{
			if (!state.context)
				deflateReset(&client);
			wire = client_deflate(&client, payload, len, &wire_len);
		}
		else
		{
			wire = malloc(len ? len : 1);
			if (!wire)
				abort();
			memcpy(wire, payload, len);
			wire_len = len;
		}
		frame = (op >> 1) & 0x3f;
		if (!frame || empty_first)
			frame = wire_len ? wire_len : 1;

		for (size_t off = 0, k = 0; off < wire_len || k == 0; k++)
		{
			size_t		n = empty_first && k == 0 ? 0 :
				(wire_len - off < frame ? wire_len - off : frame);
			struct rx_buffers b;
			int			rc;

			w.first = k == 0;
			w.final = off + n >= wire_len && !(empty_first && k == 0 && wire_len);
			w.rsv = (k == 0 && !plain) ? 0x40 : 0;
			b.in.token = wire + off;
			b.in.len = (int) n;
			b.out.token = NULL;
			b.out.len = 0;
			rc = deflate_extension(NULL, NULL, (struct lws *) &w, LWS_EXT_CB_PAYLOAD_RX,
								   NULL, &b, 0);
			if (rc == RX_FAILED)
				abort();		/* only when the shared buffer cannot be had */
			if (!plain && b.in.len != 0)
				abort();		/* every byte lws handed over must be used */
			if (!plain && b.out.len)
			{
				if (b.out.len < 0 || (size_t) b.out.len > srv.cfg.max_message + 1 ||
					b.out.token != rx_out)
					abort();
				if (got_len + (size_t) b.out.len <= srv.cfg.max_message + 1)
					memcpy(got + got_len, b.out.token, (size_t) b.out.len);
				got_len += (size_t) b.out.len;
			}
			off += n;
			if (w.final)
				break;
		}
		too_big = got_len > srv.cfg.max_message || state.inflated > srv.cfg.max_message;
		if (ours && !plain && !refused_before && !refused_code && !too_big &&
			!(foreign && state.context) &&
			(got_len != len || memcmp(got, payload, len)))
		{
			fprintf(stderr, "a %zu-byte message inflated to %zu different bytes\n", len, got_len);
			abort();
		}
		if (too_big && !state.discarding && !refused_code)
			abort();			/* past --max-message and neither dropped nor refused */
		if (!ours && !plain)
			foreign = true;
		free(wire);
		if (refused_code || too_big)
			break;				/* the protocol callback closes the connection */
		if (state.in_message)
			abort();			/* every message here ends in a final frame */
	}
	deflate_session_end(&state);
	if (srv.m.deflate_parked != 0)
	{
		fprintf(stderr, "%lld inflaters counted as parked after the session ended\n",
				(long long) srv.m.deflate_parked);
		abort();
	}
	deflateEnd(&client);
	free(got);
	return 0;
}
