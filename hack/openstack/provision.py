#!/usr/bin/env python3
"""Keystone content and readiness checks for hack/openstack.sh (stdlib only).

    provision.py keystone OUT.json   service users, catalog, two projects
    provision.py cinder-ready        waits until the scheduler knows a pool

Everything comes from the environment the script sets: KEYSTONE_URL (the
unversioned base), ADMIN_PASSWORD, REGION, GLANCE_URL, CINDER_URL,
GLANCE_PASSWORD, CINDER_PASSWORD, COMPUTE_PASSWORD, PROJECT_A_PASSWORD, PROJECT_B_PASSWORD.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

ENV = os.environ


def call(method, url, token=None, body=None, headers=None, ok=(200, 201, 204)):
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
            return resp.status, resp.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        if e.code in ok:
            return e.code, e.headers, json.loads(raw) if raw else None
        raise SystemExit(f'{method} {url} -> {e.code}: {raw[:500]!r}')


def token(user, password, project):
    body = {'auth': {
        'identity': {'methods': ['password'], 'password': {'user': {
            'name': user, 'domain': {'id': 'default'}, 'password': password}}},
        'scope': {'project': {'name': project, 'domain': {'id': 'default'}}},
    }}
    _, headers, data = call('POST', ENV['KEYSTONE_URL'] + '/v3/auth/tokens',
                            body=body)
    return headers['X-Subject-Token'], data['token']


def find(kind, name, tok, extra=''):
    _, _, data = call('GET', f"{ENV['KEYSTONE_URL']}/v3/{kind}?name={name}{extra}",
                      tok)
    items = data[kind]
    return items[0] if items else None


def ensure(kind, singular, body, tok):
    found = find(kind, body['name'], tok)
    if found:
        return found
    _, _, data = call('POST', f"{ENV['KEYSTONE_URL']}/v3/{kind}", tok,
                      {singular: body})
    return data[singular]


def grant(tok, project_id, user_id, role_id):
    call('PUT', f"{ENV['KEYSTONE_URL']}/v3/projects/{project_id}/users/"
         f"{user_id}/roles/{role_id}", tok)


def keystone(out):
    tok, _ = token('admin', ENV['ADMIN_PASSWORD'], 'admin')
    region = ENV['REGION']
    roles = {r: ensure('roles', 'role', {'name': r}, tok)['id']
             for r in ('admin', 'member', 'reader', 'service')}

    service_project = ensure('projects', 'project', {
        'name': 'service', 'domain_id': 'default',
        'description': 'OpenStack service users'}, tok)
    for svc in ('glance', 'cinder', 'compute'):
        user = ensure('users', 'user', {
            'name': svc, 'domain_id': 'default',
            'password': ENV[f'{svc.upper()}_PASSWORD']}, tok)
        # keystonemiddleware validates tokens as these users: `service` is
        # what the default policy asks for. `compute` stands in for Nova: its
        # token, sent as X-Service-Token, is what lets a test delete an
        # attachment of an in-use volume (Cinder refuses a user's own call,
        # bug #2004555, and has no Nova to ask).
        grant(tok, service_project['id'], user['id'], roles['service'])
        if svc != 'compute':
            grant(tok, service_project['id'], user['id'], roles['admin'])

    catalog = [
        ('glance', 'image', ENV['GLANCE_URL']),
        ('cinder', 'block-storage', ENV['CINDER_URL'] + '/v3/%(project_id)s'),
        ('cinderv3', 'volumev3', ENV['CINDER_URL'] + '/v3/%(project_id)s'),
    ]
    for name, kind, url in catalog:
        _, _, data = call('GET', f"{ENV['KEYSTONE_URL']}/v3/services?type={kind}", tok)
        service = data['services'][0] if data['services'] else call(
            'POST', f"{ENV['KEYSTONE_URL']}/v3/services", tok,
            {'service': {'name': name, 'type': kind}})[2]['service']
        _, _, data = call('GET', f"{ENV['KEYSTONE_URL']}/v3/endpoints"
                          f"?service_id={service['id']}", tok)
        have = {e['interface'] for e in data['endpoints']}
        for interface in ('public', 'internal', 'admin'):
            if interface not in have:
                call('POST', f"{ENV['KEYSTONE_URL']}/v3/endpoints", tok,
                     {'endpoint': {'service_id': service['id'], 'url': url,
                                   'interface': interface, 'region_id': region}})

    result = {'region': region}
    for key in ('a', 'b'):
        project = ensure('projects', 'project', {
            'name': f'project-{key}', 'domain_id': 'default',
            'description': f'cloudvol test project {key.upper()}'}, tok)
        user = ensure('users', 'user', {
            'name': f'user-{key}', 'domain_id': 'default',
            'default_project_id': project['id'],
            'password': ENV[f'PROJECT_{key.upper()}_PASSWORD']}, tok)
        grant(tok, project['id'], user['id'], roles['member'])
        grant(tok, project['id'], user['id'], roles['reader'])
        result[f'project_{key}'] = {
            'id': project['id'], 'name': project['name'],
            'user': user['name'], 'user_id': user['id'],
            'password': ENV[f'PROJECT_{key.upper()}_PASSWORD'],
        }
    _, admin = token('admin', ENV['ADMIN_PASSWORD'], 'admin')
    result['admin_project_id'] = admin['project']['id']
    with open(out, 'w') as f:
        json.dump(result, f, indent=2)


def cinder_ready(deadline_s=180):
    """The volume service is up and the scheduler has its pool: a create
    right after this does not fail with "No valid backend was found"."""
    deadline = time.monotonic() + deadline_s
    last = ''
    while time.monotonic() < deadline:
        try:
            tok, data = token('admin', ENV['ADMIN_PASSWORD'], 'admin')
            base = f"{ENV['CINDER_URL']}/v3/{data['project']['id']}"
            _, _, services = call('GET', base + '/os-services', tok)
            states = {s['binary']: s['state'] for s in services['services']}
            _, _, pools = call('GET', base + '/scheduler-stats/get_pools', tok)
            if (states.get('cinder-volume') == 'up'
                    and states.get('cinder-scheduler') == 'up'
                    and pools.get('pools')):
                return
            last = f'services {states}, pools {pools}'
        except (SystemExit, OSError) as e:
            last = str(e)
        time.sleep(1)
    raise SystemExit(f'cinder not ready after {deadline_s}s: {last}')


if __name__ == '__main__':
    if sys.argv[1:2] == ['keystone'] and len(sys.argv) == 3:
        keystone(sys.argv[2])
    elif sys.argv[1:] == ['cinder-ready']:
        cinder_ready()
    else:
        raise SystemExit(__doc__)
