/*-------------------------------------------------------------------------
 *
 * credentials.c
 *	  The two primitives the credential functions in 20_credentials.sql
 *	  cannot get from SQL: a bearer token made of strong random bytes, and a
 *	  digest comparison whose running time does not depend on where the
 *	  inputs first differ.
 *
 *	  Tokens are "<prefix>" followed by the base64url encoding (RFC 4648,
 *	  section 5, without padding) of PANKHA_TOKEN_BYTES bytes from
 *	  pg_strong_random().  The SQL side stores only a SHA-256 of the token.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "fmgr.h"
#include "utils/builtins.h"

/*
 * 48 random bytes encode to exactly 64 base64 characters.  The SQL side uses
 * the first 16 as a lookup selector and still keeps 288 secret bits.
 */
#define PANKHA_TOKEN_BYTES 48

/* A prefix is a short tag such as "pka_"; it only names the token kind. */
#define PANKHA_TOKEN_PREFIX_MAX 16

PG_FUNCTION_INFO_V1(pankha_random_token);
PG_FUNCTION_INFO_V1(pankha_digest_equal);

/*
 * Returns a fresh token: the given prefix and 48 strong random bytes in
 * base64url.
 */
Datum
pankha_random_token(PG_FUNCTION_ARGS)
{
	text	   *prefix = PG_GETARG_TEXT_PP(0);
	int			prefix_len = VARSIZE_ANY_EXHDR(prefix);
	uint8		raw[PANKHA_TOKEN_BYTES];
	int			enc_cap = pg_b64_enc_len(PANKHA_TOKEN_BYTES);
	char	   *token;
	int			enc_len;
	int			i;

	if (prefix_len > PANKHA_TOKEN_PREFIX_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token prefix is too long"),
				 errdetail("A token prefix may have at most %d bytes.",
						   PANKHA_TOKEN_PREFIX_MAX)));

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a token")));

	/* palloc reports its own failure; the +1 leaves room for the NUL. */
	token = palloc(prefix_len + enc_cap + 1);
	memcpy(token, VARDATA_ANY(prefix), prefix_len);
	enc_len = pg_b64_encode((const char *) raw, sizeof(raw),
							token + prefix_len, enc_cap);
	explicit_bzero(raw, sizeof(raw));
	if (enc_len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode a token")));

	/* base64 to base64url: '+' and '/' become '-' and '_', padding goes. */
	for (i = prefix_len; i < prefix_len + enc_len; i++)
	{
		if (token[i] == '+')
			token[i] = '-';
		else if (token[i] == '/')
			token[i] = '_';
	}
	while (enc_len > 0 && token[prefix_len + enc_len - 1] == '=')
		enc_len--;
	token[prefix_len + enc_len] = '\0';

	PG_RETURN_TEXT_P(cstring_to_text_with_len(token, prefix_len + enc_len));
}

/*
 * True when two digests are equal, looking at every byte of both so that the
 * time taken does not tell an attacker how much of a guess was right.
 */
Datum
pankha_digest_equal(PG_FUNCTION_ARGS)
{
	bytea	   *a = PG_GETARG_BYTEA_PP(0);
	bytea	   *b = PG_GETARG_BYTEA_PP(1);
	const uint8 *pa = (const uint8 *) VARDATA_ANY(a);
	const uint8 *pb = (const uint8 *) VARDATA_ANY(b);
	Size		len_a = VARSIZE_ANY_EXHDR(a);
	Size		len_b = VARSIZE_ANY_EXHDR(b);
	volatile uint8 diff = 0;
	Size		i;

	/* Digest lengths are public (always 32 for SHA-256); only bytes are not. */
	if (len_a != len_b)
		PG_RETURN_BOOL(false);

	for (i = 0; i < len_a; i++)
		diff |= pa[i] ^ pb[i];

	PG_RETURN_BOOL(diff == 0);
}
