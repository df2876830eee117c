-- wrk script for the implicit-refresh row: a pool of refresh tokens, one per
-- session (logins made by run.sh). Each request takes one and sends it as the
-- only cookie; jwtgate rotates and the response's Set-Cookie (refresh last)
-- puts the successor back. A token lost (no rotation) shrinks the pool, and
-- an empty pool sends no cookie: a 401 that fails the run.
local pool = {}

init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then pool[#pool + 1] = line end
  end
end

request = function()
  local token = table.remove(pool)
  if token == nil then
    return wrk.format("GET", "/api/x")
  end
  return wrk.format("GET", "/api/x", { ["Cookie"] = "refresh_token_cookie=" .. token })
end

response = function(status, headers, body)
  local cookie = headers["Set-Cookie"]
  if status == 200 and cookie ~= nil then
    local token = cookie:match("^refresh_token_cookie=([^;]+)")
    if token ~= nil then pool[#pool + 1] = token end
  end
end
