/*
 * deflate.c - permessage-deflate (RFC 7692) with bounded memory per
 * connection: lws 4.1.6's extension for negotiation and for what the
 * bridge sends, the bridge's answer to each client's offer, and the
 * inflating of what clients send, with zlib, with each connection's
 * inflater parked between messages.
 *
 * Why the bridge inflates itself: lws 4.1.6 inflates into a 1 KB buffer
 * per connection.  When that fills before the input is used up, it leaves
 * zlib pointing at the rest of the input and puts the connection on a
 * list to be finished later; but that input lies in the read buffer all
 * connections of the thread share (or in a flow-control buffer it frees),
 * so when another connection is read first the stream is corrupted
 * ("invalid distance too far back", the agent dropped with 1006).  And
 * when the buffer is exactly full as the last input of a message is used,
 * the 5 bytes it adds for the trailer are not enough and an assert aborts
 * the process.  Both need large messages from several clients at once
 * (test_deflate_load).  So on lws 4.1 the extension callback inflates a
 * compressed message's payload itself: all of what one read brought, at
 * once, into one buffer shared by all connections (--max-message bytes:
 * lws hands it to the protocol callback before it reads anything else),
 * adding the 00 00 ff ff trailer at the end of the message.  Nothing is
 * left pending, so nothing can be overwritten.  Past --max-message the
 * rest of the stream is dropped and the protocol callback closes the
 * connection with 1009; invalid data closes it with 1007.  lws still
 * deflates what the bridge sends, and passes uncompressed messages and
 * control frames through.  lws 4.1 cannot tell an extension a frame's
 * opcode, so a pong with payload sent between two fragments of a
 * compressed message would be taken for message data; clients send pongs
 * only to answer pings, which the bridge does not send.
 *
 * Where the memory goes (zlib 1.2.13): an inflater is zlib's inflate state
 * (7,160 bytes, whatever the window) plus a window of 2^bits bytes.  The
 * deflater (5,952 bytes of state plus four times the window at memLevel 1)
 * is made and freed by lws for each message the bridge sends, since acks
 * and pongs are small; lws keeps a 1 KB output buffer for them.  At 11
 * window bits a held inflater alone would be 9.2 KB, most of a 10 KB
 * budget per connection.
 *
 * So between two messages of a client that keeps its context, the bridge
 * keeps only the window: once a message has been inflated (or when zlib
 * stands at a block boundary with no bits left in the middle of one), the
 * window is copied out (inflateGetDictionary) and the inflater freed; the
 * next compressed payload gets a fresh inflater with the window put back
 * (inflateSetDictionary).  That is what zlib would have done with the
 * state it kept, so the stream is the same.  Clients without context
 * keep nothing between messages.
 *
 * Clients that cannot be given a window (no client_max_window_bits in the
 * offer) would need 32 KB kept each; they are answered with
 * client_no_context_takeover and compress each message on its own.
 */
#include "deflate.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

/*
 * On lws 4.1 the bridge inflates what clients send itself (see the top of
 * this file).  The extension interface hands the callback its buffers as
 * lws' private struct lws_ext_pm_deflate_rx_ebufs and expects one of the
 * codes of lws' private enum pmd_return back; both are mirrored here, for
 * 4.1 only.  With any other lws, lws' own extension inflates.
 */
#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 1
#define OWN_INFLATE true
#else
#define OWN_INFLATE false
#endif

/* lws 4.1's struct lws_ext_pm_deflate_rx_ebufs */
struct rx_buffers
{
	struct lws_tokens in;		/* payload as received; all of it is used */
	struct lws_tokens out;		/* what it inflated to */
};

/* lws 4.1's enum pmd_return, the codes used here */
#define RX_DID_NOTHING 1
#define RX_NONFINAL 3
#define RX_FINAL 4
#define RX_FAILED (-1)

/*
 * What one call inflates, for every connection: lws hands it on to the
 * protocol callback before it reads from any other connection.  It holds
 * --max-message bytes plus one, so that a message inflating past the limit
 * shows as too big, plus the NUL lws may write after the end.
 */
static unsigned char *rx_out;
static size_t rx_out_size;

/* What a client offered in its first permessage-deflate offer. */
struct offer
{
	bool		found;			/* a permessage-deflate offer at all */
	bool		client_no_context;	/* client_no_context_takeover */
	bool		server_no_context;	/* server_no_context_takeover */
	bool		client_window;	/* client_max_window_bits, with or without a value */
	int			client_window_max;	/* its value, 0 if none */
};

/*
 * Read the first permessage-deflate offer of the Sec-WebSocket-Extensions
 * header (the one lws accepts) into *o.  Parameters are matched whole;
 * anything unknown is left to lws.
 */
static void
read_offer(struct lws *wsi, struct offer *o)
{
	char		hdr[1024];
	char	   *ext, *save_ext;
	int			n;

	memset(o, 0, sizeof(*o));
	n = lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_EXTENSIONS);
	if (n <= 0)
		return;
	for (ext = strtok_r(hdr, ",", &save_ext); ext; ext = strtok_r(NULL, ",", &save_ext))
	{
		char	   *param, *save_param;
		bool		first = true;

		for (param = strtok_r(ext, ";", &save_param); param;
			 param = strtok_r(NULL, ";", &save_param), first = false)
		{
			char	   *value;
			size_t		len;

			param += strspn(param, " \t");
			len = strlen(param);
			while (len && (param[len - 1] == ' ' || param[len - 1] == '\t'))
				param[--len] = '\0';
			if (first)
			{
				if (strcmp(param, "permessage-deflate"))
					break;
				o->found = true;
				continue;
			}
			value = strchr(param, '=');
			if (value)
				*value++ = '\0';
			if (!strcmp(param, "client_no_context_takeover"))
				o->client_no_context = true;
			else if (!strcmp(param, "server_no_context_takeover"))
				o->server_no_context = true;
			else if (!strcmp(param, "client_max_window_bits"))
			{
				o->client_window = true;
				if (value)
				{
					if (*value == '"')
						value++;
					o->client_window_max = atoi(value);
				}
			}
		}
		if (o->found)
			return;
	}
}

/*
 * LWS_CALLBACK_ADD_HEADERS: complete lws' answer to the client's offer.
 *
 * lws 4.1.6 answers "permessage-deflate" plus the offer's parameter-less
 * options, and never client_max_window_bits, which would leave the client
 * on a 32 KB window.  When the client offered that parameter the bridge
 * appends "client_max_window_bits=N" (--deflate-window, or the client's
 * own smaller value, as RFC 7692 7.1.2.2 requires).  When it did not, or
 * when it asked for server_no_context_takeover (lws' own inflater, used
 * with lws other than 4.1, then frees itself after each message, so the
 * client must not rely on context),
 * the bridge appends client_no_context_takeover, which a server may always
 * add (7.1.1.2).  Nothing is changed unless the last header line is lws'
 * permessage-deflate answer.
 */
void
deflate_answer(struct lws *wsi, struct deflate_state *s, struct lws_process_html_args *args)
{
	static const char answer[] = "Sec-WebSocket-Extensions: permessage-deflate";
	struct offer o;
	char		extra[80];
	char	   *end, *line;
	int			n = 0, scanned = 0, window = 15;
	bool		client_no_context;

	read_offer(wsi, &o);
	if (!o.found)
		return;
	/* what lws alone would do, should its answer not be recognised below */
	s->window = 15;
	s->context = !o.client_no_context && !o.server_no_context;
	end = args->p - 2;
	if (memcmp(end, "\r\n", 2))
		return;
	for (line = end; scanned < 512 && !(line[-2] == '\r' && line[-1] == '\n'); line--)
		scanned++;
	if (scanned >= 512 || end - line < (int) sizeof(answer) - 1 ||
		strncasecmp(line, answer, sizeof(answer) - 1))
		return;

	extra[0] = '\0';
	if (o.client_window)
	{
		window = srv.cfg.deflate_window;
		if (o.client_window_max >= 8 && o.client_window_max < window)
			window = o.client_window_max;
		n += snprintf(extra + n, sizeof(extra) - n, "; client_max_window_bits=%d", window);
		/* zlib deflates with 9 bits when told 8: inflate with at least 9 */
		if (window < 9)
			window = 9;
	}
	client_no_context = o.client_no_context;
	if (!client_no_context && (!o.client_window || o.server_no_context))
	{
		n += snprintf(extra + n, sizeof(extra) - n, "; client_no_context_takeover");
		client_no_context = true;
	}
	if (n + 2 >= args->max_len)
		return;
	memcpy(end, extra, n);
	memcpy(end + n, "\r\n", 2);
	args->p = end + n + 2;
	args->max_len -= n;
	s->window = window;
	s->context = !client_no_context;
}

/*
 * LWS_CALLBACK_ESTABLISHED: size this connection's zlib streams and say
 * which of them lws may free after each message.
 */
void
deflate_established(struct lws *wsi, struct deflate_state *s)
{
	char		v[8];

	if (!s->window)
		s->window = 15;
	/* lws sizes both of a server's streams from server_max_window_bits */
	snprintf(v, sizeof(v), "%d", s->window);
	lws_set_extension_option(wsi, "permessage-deflate", "server_max_window_bits", v);
	snprintf(v, sizeof(v), "%d", srv.cfg.deflate_mem_level);
	lws_set_extension_option(wsi, "permessage-deflate", "mem_level", v);
	/*
	 * What the bridge sends (acks, pongs) is small: its deflater is freed
	 * after each message (lws keys this on the "client" flag; dropping
	 * context on one's own sending side needs no negotiation).
	 */
	lws_set_extension_option(wsi, "permessage-deflate", "client_no_context_takeover", NULL);
	/*
	 * A client without context takeover needs no window kept: lws frees
	 * the inflater after each message (it keys that on the "server" flag).
	 */
	if (!s->context)
		lws_set_extension_option(wsi, "permessage-deflate", "server_no_context_takeover", NULL);
}

/* Free the inflater and window a connection holds. */
void
deflate_session_end(struct deflate_state *s)
{
	if (s->parked)
		srv.m.deflate_parked--;
	if (s->inflater)
	{
		inflateEnd(s->inflater);
		free(s->inflater);
		s->inflater = NULL;
	}
	free(s->dict);
	s->dict = NULL;
	s->dict_len = 0;
	s->parked = false;
	s->in_message = false;
}

/*
 * Keep only the window of the inflater (when the message goes on, or the
 * client keeps its context) and free the rest.  Nothing changes if the
 * window cannot be kept.
 */
static void
park(struct deflate_state *s, bool keep_window)
{
	uInt		len = 0;

	if (keep_window)
	{
		if (inflateGetDictionary(s->inflater, NULL, &len) != Z_OK ||
			len > (1u << s->window))
			return;
		if (!s->dict && !(s->dict = malloc((size_t) 1 << s->window)))
			return;				/* keep the inflater instead */
		if (inflateGetDictionary(s->inflater, s->dict, &len) != Z_OK)
			return;
		s->dict_len = len;
		s->parked = true;
		srv.m.deflate_parked++;
	}
	else
	{
		free(s->dict);
		s->dict = NULL;
		s->dict_len = 0;
	}
	inflateEnd(s->inflater);
	free(s->inflater);
	s->inflater = NULL;
}

/* Give a connection an inflater, holding its parked window if any; -1 on error. */
static int
unpark(struct deflate_state *s)
{
	z_stream   *z = calloc(1, sizeof(*z));

	if (!z || inflateInit2(z, -s->window) != Z_OK)
	{
		free(z);
		return -1;
	}
	if (s->dict_len && inflateSetDictionary(z, s->dict, s->dict_len) != Z_OK)
	{
		inflateEnd(z);
		free(z);
		return -1;
	}
	s->inflater = z;
	if (s->parked)
		srv.m.deflate_parked--;
	s->parked = false;
	return 0;
}

static deflate_state_fn state_of;
static deflate_refuse_fn refuse;

/* How to find a connection's state from its wsi, and how to close it. */
void
deflate_set_hooks(deflate_state_fn state_fn, deflate_refuse_fn refuse_fn)
{
	state_of = state_fn;
	refuse = refuse_fn;
}

/* Close a connection whose compressed stream cannot go on. */
static void
refuse_stream(struct lws *wsi, struct deflate_state *s, int code, const char *reason)
{
	s->discarding = true;
	refuse(wsi, code, reason);
}

/*
 * Inflate one piece of a compressed message's payload, all of it, into
 * rx_out; lws passes the result to the protocol callback.  The end of the
 * message gets the four bytes RFC 7692 7.2.2 has the sender strip.
 */
static int
inflate_payload(struct lws *wsi, struct deflate_state *s, struct rx_buffers *b)
{
	static unsigned char trailer[] = {0x00, 0x00, 0xff, 0xff};
	bool		end = lws_is_final_fragment(wsi);
	size_t		room,
				got;
	z_stream   *z;
	int			zr = Z_OK;

	if (!b->in.len && !end)
		return RX_DID_NOTHING;
	b->out.token = rx_out;
	b->out.len = 0;
	if (s->discarding)
		goto used;

	if (!s->inflater && unpark(s))
	{
		blog("error", "deflate", "cannot allocate an inflater");
		refuse_stream(wsi, s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		goto used;
	}
	z = s->inflater;
	room = srv.cfg.max_message + 1 - s->inflated;
	z->next_out = rx_out;
	z->avail_out = room;
	if (b->in.len)
	{
		z->next_in = b->in.token;
		z->avail_in = b->in.len;
		zr = inflate(z, Z_NO_FLUSH);
	}
	if (end && z->avail_in == 0 && z->avail_out && (zr == Z_OK || zr == Z_BUF_ERROR))
	{
		z->next_in = trailer;
		z->avail_in = sizeof(trailer);
		zr = inflate(z, Z_SYNC_FLUSH);
	}
	got = room - z->avail_out;
	z->next_in = NULL;
	z->avail_in = 0;
	s->inflated += got;
	b->out.len = (int) got;
	if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END)
	{
		blog("warn", "deflate", "%s sent invalid compressed data: %s",
			 s->who ? s->who : "a client", z->msg ? z->msg : "zlib error");
		refuse_stream(wsi, s, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid compressed data");
		b->out.len = 0;
	}
	else if (s->inflated > srv.cfg.max_message)
	{
		/* the protocol callback closes it with 1009; what follows is dropped */
		s->discarding = true;
	}
	else if (end)
		park(s, s->context);
	else if (z->data_type == 128)
	{
		/*
		 * zlib's word for "stopped right after a block, no bits pending,
		 * not in the last block": the window is all the state there is.
		 */
		park(s, true);
	}

used:
	b->in.token += b->in.len;
	b->in.len = 0;
	if (end)
	{
		s->in_message = false;
		return RX_FINAL;
	}
	return RX_NONFINAL;
}

/*
 * The extension callback the bridge registers: lws' permessage-deflate,
 * except that on lws 4.1 compressed payload is inflated here.
 */
int
deflate_extension(struct lws_context *context, const struct lws_extension *ext,
				  struct lws *wsi, enum lws_extension_callback_reasons reason,
				  void *user, void *in, size_t len)
{
	struct deflate_state *s;
	struct rx_buffers *b = in;

	if (!OWN_INFLATE || reason != LWS_EXT_CB_PAYLOAD_RX || !state_of || !(s = state_of(wsi)))
		return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);

	if (!s->in_message)
	{
		bool		compressed = lws_get_reserved_bits(wsi) & 0x40;

		/*
		 * RSV1 on a message's first frame says it is compressed, and the
		 * message is ours from that frame on, even when it is empty (H1:
		 * lws decides for the continuations from the first frame's RSV1,
		 * so leaving an empty first frame to it handed the rest of the
		 * message to its own inflater).  Others (uncompressed messages,
		 * pongs) are lws' to pass through.
		 */
		if (!lws_is_first_fragment(wsi))
		{
			if (!compressed)
				return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);
			/* the call lws makes once a message's last payload has been handed over */
			if (!b->in.len)
				return RX_DID_NOTHING;
			/* RSV1 on a continuation (RFC 7692 6.1) */
			refuse_stream(wsi, s, LWS_CLOSE_STATUS_PROTOCOL_ERR, "RSV1 on a continuation frame");
			b->in.token += b->in.len;
			b->in.len = 0;
			b->out.len = 0;
			return RX_DID_NOTHING;
		}
		if (!compressed)
			return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);
		s->in_message = true;
		s->inflated = 0;
	}
	if (!rx_out)
	{
		rx_out_size = srv.cfg.max_message + 2;
		if (!(rx_out = malloc(rx_out_size)))
		{
			blog("error", "deflate", "cannot allocate the inflate buffer");
			return RX_FAILED;
		}
	}
	return inflate_payload(wsi, s, b);
}
