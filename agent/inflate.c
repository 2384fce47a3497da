/*
 * inflate.c - permessage-deflate for the agent: lws 4.1.6's extension
 * negotiates and compresses what the agent sends; what the server sends
 * compressed is inflated here, with zlib, instead of by lws.
 *
 * Why (security review L13): lws 4.1.6 inflates into a 1 KB buffer.  When
 * that fills before the input is used up it leaves zlib pointing into its
 * read buffer and comes back later, and when it is exactly full as the
 * last input of a message is used, the 5 bytes it adds for the trailer may
 * not be enough and an assert aborts the process: a hostile server, or a
 * man in the middle on ws://, could stop the agent with its fans in
 * manual mode.  The bridge stopped using that code for the same reasons
 * (bridge/deflate.c).  Here each piece of compressed payload lws hands
 * over is inflated whole, at once, into a buffer that grows as needed up
 * to RX_MAX, the largest message the agent takes; nothing is left pending
 * in lws' buffers.  Past RX_MAX the connection is closed with 1009,
 * invalid data closes it with 1007, RSV1 on the first frame of a message
 * that is already going on with 1002.  RSV1 on a later continuation is
 * inflated with the message (closing from there made lws 4.1 abort in
 * free(); test_l13_deflate_default).
 * lws 4.1 cannot tell an extension a frame's opcode, so a pong with
 * payload between two fragments of a compressed message would be taken
 * for message data (and most likely close the connection with 1007).
 *
 * The server keeps its context between messages unless it said otherwise,
 * so one inflater lives for the connection, with a 15-bit window (it
 * takes any window the server uses): about 40 KB while connected.  The
 * bridge sends agents uncompressed messages (RFC 7692 allows any message
 * to go so), so against it this code runs only if another server compresses.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "link.h"

/*
 * lws 4.1's struct lws_ext_pm_deflate_rx_ebufs and the codes of its enum
 * pmd_return used here (private to lws, mirrored for 4.1 only, as in
 * bridge/deflate.c).  With any other lws its own extension inflates.
 */
#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 1
#define OWN_INFLATE true
#else
#define OWN_INFLATE false
#endif

struct rx_buffers
{
	struct lws_tokens in;		/* payload as received; all of it is used */
	struct lws_tokens out;		/* what it inflated to */
};

#define RX_DID_NOTHING 1
#define RX_NONFINAL 3
#define RX_FINAL 4

/* Free the connection's inflater and buffer (a new connection starts afresh). */
void
pk_inflate_reset(struct pk_link *l)
{
	if (l->zin)
	{
		inflateEnd(l->zin);
		free(l->zin);
		l->zin = NULL;
	}
	free(l->zout);
	l->zout = NULL;
	l->zout_cap = 0;
	l->z_in_message = false;
	l->z_inflated = 0;
	l->z_refuse_code = 0;
	l->z_refuse_reason = NULL;
}

/*
 * The connection cannot go on: the rest of what lws hands over is dropped,
 * and the protocol callback, called with nothing, closes it with code and
 * reason (an extension failing would make lws drop the socket unsaid).
 */
static int
refuse(struct pk_link *l, struct rx_buffers *b, int code, const char *reason)
{
	static unsigned char nothing[1];

	if (!l->z_refuse_code)
		pk_log(PK_LOG_ERROR, "compressed message from the server: %s; closing", reason);
	l->z_refuse_code = code;
	l->z_refuse_reason = reason;
	b->in.token += b->in.len;
	b->in.len = 0;
	b->out.token = nothing;
	b->out.len = 0;
	return RX_NONFINAL;
}

/*
 * Inflate until the input is used up (and, at the end of a message, the
 * trailer RFC 7692 7.2.2 has the sender strip), growing l->zout; the
 * output starts at l->zout.  0, or -1 (*why set) to close.
 */
static int
inflate_all(struct pk_link *l, z_stream *z, int flush, size_t *got, const char **why, int *code)
{
	for (;;)
	{
		int			zr;
		size_t		before;

		if (*got + 1 >= l->zout_cap)
		{
			size_t		ncap = l->zout_cap ? l->zout_cap * 2 : 4096;
			unsigned char *nb;

			if (ncap > (size_t) RX_MAX + 2)
				ncap = (size_t) RX_MAX + 2;
			if (ncap <= *got + 1)
			{
				*code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
				*why = "too large";
				return -1;
			}
			if (!(nb = realloc(l->zout, ncap)))
			{
				*code = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
				*why = "out of memory";
				return -1;
			}
			l->zout = nb;
			l->zout_cap = ncap;
		}
		/* one byte kept for the NUL lws writes after the end */
		z->next_out = l->zout + *got;
		z->avail_out = (uInt) (l->zout_cap - 1 - *got);
		before = z->avail_out;
		zr = inflate(z, flush);
		*got += before - z->avail_out;
		if (l->z_inflated + *got > RX_MAX)
		{
			*code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
			*why = "too large";
			return -1;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END)
		{
			*code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
			*why = "invalid compressed data";
			return -1;
		}
		/* done when zlib had room left: the input is used up */
		if (z->avail_out)
			return 0;
	}
}

static int
inflate_payload(struct lws *wsi, struct pk_link *l, struct rx_buffers *b)
{
	static unsigned char trailer[] = {0x00, 0x00, 0xff, 0xff};
	bool		end = lws_is_final_fragment(wsi);
	size_t		got = 0;
	const char *why = NULL;
	int			code = 0;
	z_stream   *z;

	if (!b->in.len && !end)
		return RX_DID_NOTHING;
	if (l->z_refuse_code)
		return refuse(l, b, l->z_refuse_code, l->z_refuse_reason);
	if (!l->zin)
	{
		if (!(z = calloc(1, sizeof(*z))) || inflateInit2(z, -15) != Z_OK)
		{
			free(z);
			return refuse(l, b, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		}
		l->zin = z;
	}
	z = l->zin;
	if (b->in.len)
	{
		z->next_in = b->in.token;
		z->avail_in = (uInt) b->in.len;
		if (inflate_all(l, z, Z_NO_FLUSH, &got, &why, &code))
			return refuse(l, b, code, why);
	}
	if (end)
	{
		z->next_in = trailer;
		z->avail_in = sizeof(trailer);
		if (inflate_all(l, z, Z_SYNC_FLUSH, &got, &why, &code))
			return refuse(l, b, code, why);
	}
	z->next_in = NULL;
	z->avail_in = 0;
	l->z_inflated += got;
	b->in.token += b->in.len;
	b->in.len = 0;
	b->out.token = l->zout;
	b->out.len = (int) got;
	if (end)
	{
		l->z_in_message = false;
		return RX_FINAL;
	}
	return RX_NONFINAL;
}

/*
 * The extension callback the agent registers: lws' permessage-deflate,
 * except that on lws 4.1 compressed payload from the server is inflated
 * here.
 */
int
pk_inflate_extension(struct lws_context *context, const struct lws_extension *ext,
					 struct lws *wsi, enum lws_extension_callback_reasons reason,
					 void *user, void *in, size_t len)
{
	struct pk_agent *a = lws_context_user(context);
	struct pk_link *l = a ? a->link : NULL;
	struct rx_buffers *b = in;

	if (!OWN_INFLATE || reason != LWS_EXT_CB_PAYLOAD_RX || !l || wsi != l->ws)
		return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);
	if (!l->z_in_message)
	{
		bool		compressed = lws_get_reserved_bits(wsi) & 0x40;

		/*
		 * RSV1 on a message's first frame says it is compressed, and it
		 * is ours from that frame on, even when that frame is empty.
		 * Uncompressed messages and control frames are lws' to pass.
		 */
		if (!lws_is_first_fragment(wsi))
		{
			if (!compressed)
				return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);
			if (!b->in.len)
				return RX_DID_NOTHING;
			return refuse(l, b, LWS_CLOSE_STATUS_PROTOCOL_ERR, "RSV1 on a continuation frame");
		}
		if (!compressed)
		{
			/*
			 * Passed on as it is.  Not through lws' extension: for an
			 * uncompressed message its answer makes lws 4.1's client
			 * hand the same payload to the protocol callback again and
			 * again, for ever (seen with a bridge sending uncompressed).
			 */
			return 0;
		}
		l->z_in_message = true;
		l->z_inflated = 0;
	}
	return inflate_payload(wsi, l, b);
}
