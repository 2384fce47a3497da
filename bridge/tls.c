/*
 * tls.c - the server certificate, and reloading it on SIGHUP.
 *
 * lws loads --tls-cert and --tls-key into its vhost's SSL_CTX at start and
 * hands that SSL_CTX to protocols[0] in
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS; the bridge keeps
 * it.  A reload first loads both files into a scratch SSL_CTX, so that a
 * missing or unreadable file, bad PEM or a key that does not belong to the
 * certificate is found while nothing has changed yet; only then do the
 * certificate, its chain and its key move into the vhost's SSL_CTX, in one
 * SSL_CTX_use_cert_and_key() call.  Each connection's SSL took its own copy
 * of the certificate when it was accepted, so open connections go on
 * undisturbed and only new ones present the new certificate.
 *
 * lws 4.1.6 has lws_tls_cert_updated(), but it loads straight into the
 * live SSL_CTX and returns 0 whatever happened: given a certificate and a
 * key that do not match, it left the vhost with the new certificate and no
 * usable key, and every later TLS handshake failed.
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* The vhost's server SSL_CTX (owned by lws), or NULL without TLS. */
static SSL_CTX *server_ctx;

/* Remember the vhost's SSL_CTX, which lws passes while creating the vhost. */
void
tls_remember_server_ctx(void *ssl_ctx)
{
	server_ctx = ssl_ctx;
}

bool
tls_can_reload(void)
{
	return server_ctx != NULL;
}

/* Log why a reload failed, with OpenSSL's reason, and clear its queue. */
static void
reload_failed(const char *what, const char *path)
{
	unsigned long e = ERR_peek_error();	/* the first: the cause */
	char		reason[256];

	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	else
		snprintf(reason, sizeof(reason), "unknown error");
	ERR_clear_error();
	blog("error", "tls_reload", "%s %s: %s; still serving the previous certificate",
		 what, path, reason);
}

/* The public key type of a certificate (EVP_PKEY_RSA, EVP_PKEY_EC, ...). */
static int
cert_key_type(X509 *cert)
{
	EVP_PKEY   *pk = cert ? X509_get0_pubkey(cert) : NULL;

	return pk ? EVP_PKEY_get_base_id(pk) : NID_undef;
}

/*
 * Load --tls-cert and --tls-key again for new connections.  Returns 0 when
 * the new certificate is in use, -1 (logged) when the previous one stays.
 */
int
tls_reload(void)
{
	SSL_CTX    *scratch;
	X509	   *cert;
	EVP_PKEY   *key;
	STACK_OF(X509) * chain = NULL;
	int			old_type, rc = -1;
	char		subject[256];

	if (!srv.cfg.tls_cert)
		return 0;
	if (!server_ctx)
	{
		blog("error", "tls_reload", "no TLS context to reload into; still serving the previous certificate");
		return -1;
	}
	ERR_clear_error();
	scratch = SSL_CTX_new(TLS_server_method());
	if (!scratch)
	{
		reload_failed("cannot make a TLS context for", srv.cfg.tls_cert);
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(scratch, srv.cfg.tls_cert) != 1)
		reload_failed("cannot load certificate", srv.cfg.tls_cert);
	else if (SSL_CTX_use_PrivateKey_file(scratch, srv.cfg.tls_key, SSL_FILETYPE_PEM) != 1)
		reload_failed("cannot load private key", srv.cfg.tls_key);
	else if (SSL_CTX_check_private_key(scratch) != 1)
		reload_failed("private key does not match the certificate: key", srv.cfg.tls_key);
	else
	{
		cert = SSL_CTX_get0_certificate(scratch);
		key = SSL_CTX_get0_privatekey(scratch);
		SSL_CTX_get0_chain_certs(scratch, &chain);
		old_type = cert_key_type(SSL_CTX_get0_certificate(server_ctx));

		/*
		 * OpenSSL keeps one certificate per key type: a new RSA
		 * certificate replaces the old RSA one, but an EC one would sit
		 * beside it and the old one would still be offered.
		 */
		if (old_type != NID_undef && old_type != cert_key_type(cert))
			blog("error", "tls_reload",
				 "%s: its key type (%s) differs from the one in use (%s), which a reload "
				 "cannot remove; restart the bridge to change it; still serving the previous certificate",
				 srv.cfg.tls_cert, OBJ_nid2sn(cert_key_type(cert)), OBJ_nid2sn(old_type));
		else if (SSL_CTX_use_cert_and_key(server_ctx, cert, key, chain, 1) != 1)
			reload_failed("cannot install certificate", srv.cfg.tls_cert);
		else
		{
			X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
			blog("info", "tls_reload", "new connections get %s (%s)", srv.cfg.tls_cert, subject);
			rc = 0;
		}
	}
	SSL_CTX_free(scratch);
	ERR_clear_error();
	return rc;
}
