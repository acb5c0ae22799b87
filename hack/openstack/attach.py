#!/usr/bin/env python3
"""Attach a volume of hack/openstack.sh's Cinder "as Nova would", with no Nova.

    attach.py attach VOLUME_ID [--project a|b] [--server-id UUID]
        -> prints the attachment id once the volume is `in-use`
    attach.py detach VOLUME_ID [--project a|b]
        -> deletes the volume's attachments; returns once it is `available`

The wire calls (Cinder v3 attachments API):

    POST /v3/{project}/attachments                    OpenStack-API-Version: volume 3.54
         {"attachment": {"volume_uuid": V, "instance_uuid": S, "mode": "rw",
                         "connector": {"initiator": ..., "ip": ..., "host": ..., ...}}}
         -> volume `attaching`, attachment `reserved`
    POST /v3/{project}/attachments/{id}/action  {"os-complete": null}
         -> volume `in-use`, `attachments[].server_id` = S
    DELETE /v3/{project}/attachments/{id}             (3.54, plus X-Service-Token)
         -> volume `available`

Cinder refuses a user's own DELETE of an attachment that names a server
(bug #2004555) unless Nova confirms it or the call carries a service token;
the `compute` service user that hack/openstack.sh creates provides one.

Credentials come from the environment that `hack/openstack.sh start` prints,
or from its state folder ($CLOUDVOL_OS_DIR, default
${TMPDIR:-/tmp}/cloudvol-openstack-$UID). Standard library only.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

CONNECTOR = {
    'initiator': 'iqn.2004-10.dev.cloudvol:test-host',
    'ip': '127.0.0.1',
    'platform': 'x86_64',
    'host': 'cloudvol-test-host',
    'os_type': 'linux',
    'multipath': False,
}


def load_env():
    env = dict(os.environ)
    if 'CLOUDVOL_OS_KEYSTONE_URL' not in env:
        state = env.get('CLOUDVOL_OS_DIR') or os.path.join(
            env.get('TMPDIR', '/tmp'), f'cloudvol-openstack-{os.getuid()}')
        try:
            with open(os.path.join(state, 'env')) as f:
                for line in f:
                    if line.startswith('export ') and '=' in line:
                        k, v = line[len('export '):].strip().split('=', 1)
                        env[k] = v.strip("'")
        except FileNotFoundError:
            sys.exit(f'no running hack/openstack.sh in {state}; start it first')
    return env


def request(method, url, token=None, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header('Accept', 'application/json')
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if token:
        req.add_header('X-Auth-Token', token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        sys.exit(f'{method} {url} -> {e.code}: {e.read()[:500]!r}')


def token(env, user, password, project):
    body = {'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': user, 'domain': {'name': 'Default'}, 'password': password}}},
        'scope': {'project': {'name': project, 'domain': {'name': 'Default'}}},
    }}
    headers, _ = request('POST', env['CLOUDVOL_OS_KEYSTONE_URL'] + '/v3/auth/tokens',
                         body=body)
    return headers['X-Subject-Token']


def wait_status(url, tok, want, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        _, body = request('GET', url, tok)
        status = body['volume']['status']
        if status == want:
            return body['volume']
        if time.monotonic() > deadline:
            sys.exit(f'volume still {status} after {timeout}s (wanted {want})')
        time.sleep(0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('action', choices=['attach', 'detach'])
    parser.add_argument('volume_id')
    parser.add_argument('--project', choices=['a', 'b'], default='a')
    parser.add_argument('--server-id', default=None,
                        help='the "server" to attach to (default: a random UUID)')
    args = parser.parse_args()
    env = load_env()
    p = args.project.upper()
    tok = token(env, env[f'CLOUDVOL_OS_PROJECT_{p}_USER'],
                env[f'CLOUDVOL_OS_PROJECT_{p}_PASSWORD'],
                env[f'CLOUDVOL_OS_PROJECT_{p}_NAME'])
    base = f"{env['CLOUDVOL_OS_CINDER_URL']}/v3/{env[f'CLOUDVOL_OS_PROJECT_{p}_ID']}"
    micro = {'OpenStack-API-Version': 'volume 3.54'}
    volume_url = f'{base}/volumes/{args.volume_id}'

    if args.action == 'attach':
        _, body = request('POST', f'{base}/attachments', tok, {'attachment': {
            'volume_uuid': args.volume_id,
            'instance_uuid': args.server_id or str(uuid.uuid4()),
            'mode': 'rw',
            'connector': CONNECTOR,
        }}, micro)
        attachment = body['attachment']['id']
        request('POST', f'{base}/attachments/{attachment}/action', tok,
                {'os-complete': None}, micro)
        wait_status(volume_url, tok, 'in-use')
        print(attachment)
    else:
        service = token(env, env['CLOUDVOL_OS_SERVICE_USER'],
                        env['CLOUDVOL_OS_SERVICE_PASSWORD'],
                        env['CLOUDVOL_OS_SERVICE_PROJECT'])
        _, body = request('GET', volume_url, tok)
        for a in body['volume']['attachments']:
            request('DELETE', f"{base}/attachments/{a['attachment_id']}", tok,
                    headers={**micro, 'X-Service-Token': service})
        wait_status(volume_url, tok, 'available')


if __name__ == '__main__':
    main()
