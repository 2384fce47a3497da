/*
 * ingest_batch.h - data frames from agents to pankha.ingest_many
 * (ingest_batch.c): batching, backpressure, and the ack rules.
 */
#ifndef PANKHA_INGEST_BATCH_H
#define PANKHA_INGEST_BATCH_H

#include "agents.h"

/*
 * Who receives committed frames (the dashboards): wanted() says whether
 * anyone would, so that frames are only prepared for forwarding then;
 * stored() gets each newly stored frame as a "data" message.
 */
typedef bool (*ingest_wanted_fn) (void);
typedef void (*ingest_stored_fn) (const char *agent_id, const char *group,
								  const char *msg, size_t len);

int			ingest_on_stored(ingest_wanted_fn wanted, ingest_stored_fn stored);
void		ingest_refuse(struct agent *a, int64_t seq, int close_code, const char *code,
						  const char *why);
void		ingest_queue_frame(struct agent *a, const char *text, size_t len, int64_t seq,
							   cJSON *data);
void		ingest_flush(void);
size_t		ingest_held(void);
int			ingest_failing(void);
size_t		ingest_held_bytes(void);

#endif							/* PANKHA_INGEST_BATCH_H */
