-- Argo CD health check for cloudvol.dev Volume, VolumeImage and ImageShare.
--
-- cloudvol's conditions follow kstatus: Ready, Reconciling and Stalled, each with its own
-- observedGeneration, next to status.observedGeneration. This script reads them as:
--   Healthy      Ready=True, and the status describes the current generation
--   Degraded     Stalled=True: a person must act (also while the object is being deleted,
--                for example an attached volume that blocks its deletion)
--   Progressing  anything else: no status yet, a status about an older generation,
--                Reconciling=True, Ready not True, or the object being deleted
--
-- Argo CD runs it without Lua's string library, so it uses only `..` and tostring.

local function conditions_of(status)
  local found = {}
  if status ~= nil and status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type ~= nil then
        found[condition.type] = condition
      end
    end
  end
  return found
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- The condition's message, else its reason, else the fallback.
local function text(condition, fallback)
  if condition ~= nil then
    if condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
    if condition.reason ~= nil and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

local function health()
  local meta = obj.metadata or {}
  local status = obj.status
  local generation = meta.generation
  local conditions = conditions_of(status)
  local stalled = conditions["Stalled"]

  if meta.deletionTimestamp ~= nil then
    if is_true(stalled) then
      return { status = "Degraded", message = "Deletion blocked: " .. text(stalled, "Stalled") }
    end
    return { status = "Progressing", message = "Being deleted: " .. text(conditions["Reconciling"], "waiting for cloudvol to release the cloud resource") }
  end

  if status == nil or status.observedGeneration == nil then
    return { status = "Progressing", message = "Waiting for cloudvol to report a status" }
  end
  if generation ~= nil and status.observedGeneration < generation then
    return { status = "Progressing", message = "Waiting for cloudvol to observe generation " .. tostring(generation) ..
      " (status describes generation " .. tostring(status.observedGeneration) .. ")" }
  end
  if generation ~= nil then
    for _, kind in ipairs({ "Ready", "Reconciling", "Stalled" }) do
      local condition = conditions[kind]
      if condition ~= nil and condition.observedGeneration ~= nil and condition.observedGeneration < generation then
        return { status = "Progressing", message = "Waiting for cloudvol to update condition " .. kind ..
          " for generation " .. tostring(generation) }
      end
    end
  end

  if is_true(stalled) then
    return { status = "Degraded", message = text(stalled, "Stalled") }
  end
  local reconciling = conditions["Reconciling"]
  if is_true(reconciling) then
    return { status = "Progressing", message = text(reconciling, "Reconciling") }
  end
  local ready = conditions["Ready"]
  if is_true(ready) then
    return { status = "Healthy", message = text(ready, "Ready") }
  end
  return { status = "Progressing", message = text(ready, "Waiting for Ready") }
end

return health()
