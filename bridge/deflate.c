/*
 * deflate.c - permessage-deflate (RFC 7692) with bounded memory per
 * connection: lws 4.1.6's own extension, the bridge's answer to each
 * client's offer, and the connection's inflater parked between messages.
 *
 * Where the memory goes (zlib 1.2.13, lws 4.1.6): lws keeps one inflater
 * per connection for as long as the client keeps its compression context,
 * that is zlib's inflate state (7,160 bytes, whatever the window) plus a
 * window of 2^bits bytes, and two 1 KB buffers of its own.  The deflater
 * (5,952 bytes of state plus four times the window at memLevel 1) is made
 * and freed for each message the bridge sends, since acks and pongs are
 * small.  At 11 window bits a held inflater alone would be 9.2 KB, most of
 * a 10 KB budget per connection.
 *
 * So between two messages of a client that keeps its context, the bridge
 * keeps only the window: when a message has been inflated and zlib stands
 * at a block boundary with no input or bits left, the window is copied out
 * (inflateGetDictionary) and the inflater freed; when the next compressed
 * frame arrives, a fresh inflater is given the window back
 * (inflateSetDictionary) before lws' extension inflates it.  That is what
 * zlib would have done with the state it kept, so the stream is the same.
 *
 * Clients that cannot be given a window (no client_max_window_bits in the
 * offer) would need 32 KB kept each; they are answered with
 * client_no_context_takeover and compress each message on its own.
 */
#include "bridge.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

/*
 * Parking needs the inflater lws keeps for a connection.  In lws 4.1 its
 * permessage-deflate state (struct lws_ext_pm_deflate_priv, which lws
 * passes to the extension callback as "user") begins with that z_stream;
 * nothing else of lws' private layout is used.  Other versions pass
 * through untouched.  At run time zlib itself confirms the stream is a
 * live inflater (inflateGetDictionary checks the state's back pointer)
 * before anything is parked.
 */
#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 1
#define PARKING_POSSIBLE true
#else
#define PARKING_POSSIBLE false
#endif

static bool parking = PARKING_POSSIBLE;

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
 * when it asked for server_no_context_takeover (lws then frees its
 * inflater after each message, so the client must not rely on context),
 * the bridge appends client_no_context_takeover, which a server may always
 * add (7.1.1.2).  Nothing is changed unless the last header line is lws'
 * permessage-deflate answer.
 */
void
deflate_answer(struct lws *wsi, struct ws_session *s, struct lws_process_html_args *args)
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
deflate_established(struct lws *wsi, struct ws_session *s)
{
	char		v[8];

	/* lws sizes both of a server's streams from server_max_window_bits */
	snprintf(v, sizeof(v), "%d", s->window ? s->window : 15);
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

/* Free what a connection's parked inflater kept. */
void
deflate_session_end(struct ws_session *s)
{
	if (s->parked)
		srv.m.deflate_parked--;
	free(s->dict);
	s->dict = NULL;
	s->dict_len = 0;
	s->parked = false;
	s->context = false;
}

/*
 * Keep only the window of an inflater that stands between blocks, and
 * free the rest.  Nothing happens if zlib does not recognise the stream.
 */
static void
park(struct lws *wsi, struct ws_session *s, z_stream *rx)
{
	uInt		len = 0;

	if (inflateGetDictionary(rx, NULL, &len) != Z_OK)
	{
		blog("warn", "deflate", "lws' inflater is not where lws 4.1 keeps it: "
			 "inflaters stay allocated between messages");
		parking = false;
		return;
	}
	if (len > (1u << s->window))
		return;
	if (!s->dict && !(s->dict = malloc((size_t) 1 << s->window)))
		return;					/* keep the inflater instead */
	if (inflateGetDictionary(rx, s->dict, &len) != Z_OK)
		return;
	s->dict_len = len;
	inflateEnd(rx);
	s->parked = true;
	/* between whole messages or in the middle of one (decides unparking) */
	s->mid_message = !lws_is_final_fragment(wsi);
	srv.m.deflate_parked++;
}

/* Give a parked connection a fresh inflater holding its window; -1 on error. */
static int
unpark(struct ws_session *s, z_stream *rx)
{
	if (inflateInit2(rx, -s->window) != Z_OK)
		return -1;
	if (s->dict_len && inflateSetDictionary(rx, s->dict, s->dict_len) != Z_OK)
	{
		inflateEnd(rx);
		return -1;
	}
	s->parked = false;
	srv.m.deflate_parked--;
	return 0;
}

/*
 * The extension callback the bridge registers: lws' permessage-deflate,
 * with the inflater of a client that keeps its context parked between
 * messages (see the top of this file).
 */
int
deflate_extension(struct lws_context *context, const struct lws_extension *ext,
				  struct lws *wsi, enum lws_extension_callback_reasons reason,
				  void *user, void *in, size_t len)
{
	struct ws_session *s;
	z_stream   *rx = user;		/* lws 4.1: its state begins with the inflater */
	int			r;

	if (reason != LWS_EXT_CB_PAYLOAD_RX || !parking ||
		!(s = lws_wsi_user(wsi)) || !s->context)
		return lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);

	/*
	 * A compressed frame (RSV1) starts a message lws will inflate, and
	 * the rest of a message parked in its middle comes in continuation
	 * frames; other frames (pongs, uncompressed messages) leave it parked.
	 */
	if (s->parked && ((lws_get_reserved_bits(wsi) & 0x40) || s->mid_message) &&
		unpark(s, rx))
	{
		blog("error", "deflate", "cannot allocate an inflater");
		return -1;
	}
	r = lws_extension_callback_pm_deflate(context, ext, wsi, reason, user, in, len);

	/*
	 * data_type 128 is zlib's word for "stopped right after a block, no
	 * bits pending, not in the last block": with no input left, the window
	 * is all the state there is.
	 */
	if (r >= 0 && !s->parked && rx->state && rx->avail_in == 0 && rx->data_type == 128)
		park(wsi, s, rx);
	return r;
}
