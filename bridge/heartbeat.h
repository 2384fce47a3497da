/*
 * heartbeat.h - the bridge's heartbeat in pankha.bridges (heartbeat.c).
 */
#ifndef PANKHA_HEARTBEAT_H
#define PANKHA_HEARTBEAT_H

int			heartbeat_init(void);
void		heartbeat_shutdown(void);

#endif							/* PANKHA_HEARTBEAT_H */
