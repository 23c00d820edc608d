// Package discovery finds services across the mesh, as Serval does: a
// listener started with --service=NAME answers queries on MDP port 11 with
// "NAME.mdp.port=PORT".
package discovery
