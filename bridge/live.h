/*
 * live.h - live data across bridges (live.c): the topics this bridge's
 * dashboards watch go to pankha.live_watch, and the frames other bridges
 * ingest for them come back on NOTIFY pankha_live.
 */
#ifndef PANKHA_LIVE_H
#define PANKHA_LIVE_H

#include "util.h"

int			live_init(void);
void		live_topics_changed(void);
const char *live_group(const char *agent_id);

/* ui_ws.c's side */
size_t		ui_live_topics(struct sbuf *array);
void		ui_deliver_agent(const char *agent_id, const char *group, const char *text,
							 size_t len);

#endif							/* PANKHA_LIVE_H */
